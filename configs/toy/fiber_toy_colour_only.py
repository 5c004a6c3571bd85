# A diagnostic, not a recipe: the toy model trained for 400 iterations on boxes named by their colour alone
# (train_od_colour: "red. blue. ..."), where reading the colour is the only way to lower the token loss.
# With FIBER's loss weights the model names 25 % of the training boxes' colours right (it calls almost every box
# "green"); with --cfg-options model.bbox_head.loss_cls.loss_weight=4.0, 100 % (docs/toy.md, section "Findings").
_base_ = './fiber_toy.py'

max_iters = 400

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='FilteredODVGDataset',
        data_root={{_base_.data_root}},
        ann_file='annotations/train_od_colour.jsonl',
        label_map_file='annotations/label_map_colour.json',
        data_prefix=dict(img='images/train_od_attr/'),
        pipeline={{_base_.train_pipeline}}))
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50)]
custom_hooks = []
default_hooks = dict(checkpoint=dict(interval=max_iters))
