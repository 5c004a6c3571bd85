# The ODinW fine-tuning protocol on the toy model: the model pre-trained by `make quickstart`
# (fiber_toy_attribute_first.py; fiber_toy.py trains the same model)
# fine-tuned on the toy downstream set (data/toy_novel_shapes: star, ring, hexagon, never named in the toy
# pre-training) with the real protocol code (k-shot sampler, GENERAL_COPY repetition, plateau lr drop, early stop,
# best checkpoint tested on the test split). `make toy-few-shot` runs it:
#   python tools/odinw_finetune.py configs/toy/fiber_toy_few_shot.py work_dirs/quickstart/iter_1900.pth \
#       --shots 1 5 0 --seeds 3
# Only the sizes differ from configs/odinw/_base_/odinw_finetune.py: the toy's image sizes and token count, a
# larger lr for a model trained at 1e-3, at most 25 epochs, and plateau / early-stop patience 2 / 4 for a
# CPU-sized schedule.
_base_ = ['./fiber_toy.py']

data_root = 'data/toy_novel_shapes/'
dataset_help = {
    'quickstart': 'run `make quickstart` first (it writes work_dirs/quickstart/iter_1900.pth)',
    'default': 'python tools/misc/toy_few_shot.py writes data/toy_novel_shapes (make toy-few-shot)',
}
monitor = 'coco/bbox_mAP'
model = dict(backbone=dict(frozen_stages=1))  # as ODinW: patch embedding + stage 0 frozen

# as ODinW: the original's box convention, flip 0.5 (these shapes are symmetric; there are no captions to flip)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', imdecode_backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='GTBoxSubOne_GLIP'),
    dict(type='ClipBoxesToImage', offset=1),
    dict(type='ShortSideResize', short_sides=(128, 144, 160), max_long_side=256),
    dict(type='RandomFlip_GLIP', prob=0.5),
    dict(type='PackDetInputs', meta_keys=_base_.meta_keys)
]  # test_pipeline: the toy's

max_epochs = 25
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
train_dataloader = dict(_delete_=True, batch_size=4, num_workers=1, persistent_workers=False,
                        sampler=dict(type='DefaultSampler', shuffle=True), dataset=None)
val_dataloader = dict(_delete_=True, batch_size=1, num_workers=0, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False), dataset=None)
test_dataloader = val_dataloader
val_evaluator = None
test_evaluator = None
optim_wrapper = dict(optimizer=dict(lr=5e-4, weight_decay=0.05), paramwise_cfg=dict(language_model_lr_mult=0.1))
param_scheduler = [
    dict(type='ReduceOnPlateauLR', monitor=monitor, rule='greater', factor=0.1, patience=2, by_epoch=True)
]
custom_hooks = [dict(type='EarlyStoppingHook', monitor=monitor, rule='greater', min_delta=0.0, patience=4)]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(_delete_=True, type='AtomicCheckpointHook', interval=1, max_keep_ckpts=1, save_best=monitor,
                    rule='greater_equal'))
log_processor = dict(by_epoch=True)

finetune_protocol = dict(
    datasets=[
        dict(name='toy_novel_shapes', data_root=data_root, classes=('star', 'ring', 'hexagon'),
             train=dict(ann_file='annotations/train.json', img='images/train/'),
             val=dict(ann_file='annotations/val.json', img='images/val/'),
             test=dict(ann_file='annotations/test.json', img='images/test/'))
    ],
    general_copy=[[1, 8], [3, 4], [5, 2], [10, 1], [0, 1]],
    global_batch_size=4,
    monitor=monitor,
    box_check='error')
