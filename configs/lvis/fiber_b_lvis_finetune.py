# FIBER-B fine-tuned on LVIS v1 train (the LVIS fine-tuning yaml): every training caption is FIBER's
# detection-to-grounding caption with control (0, 0, 1, 0), i.e. always 85 negatives, drawn from the
# 1203 contiguous LVIS ids only (no "background" entry: the original's COCO-grounding safeguard); flip 0.5,
# 24 epochs at a global batch of 32, validated on LVIS minival with Fixed AP every 2 epochs (an LVIS evaluation
# runs 31 prompts per image), best checkpoint kept. Published: 56.9 Fixed AP on minival.
#   bash tools/dist_train.sh configs/lvis/fiber_b_lvis_finetune.py 8
_base_ = ['./fiber_b_lvis_minival_fixed_ap.py', '../_base_/fiber_b_finetune.py']

load_from = 'checkpoints/fiber_b_mmdet.pth'
dataset_help = {
    '_delete_': True,  # the zero-shot base's help is one string
    'checkpoints': 'README.md, section "Converting an official checkpoint" (the fine-grained FIBER-B model)',
    'lvis_od_train': 'docs/datasets.md, section "Fine-tuning data", LVIS',
    'default': 'docs/datasets.md, section "Evaluation data", LVIS',
}
model = dict(backbone=dict(with_cp=True))

caption = dict(type='ODToGroundingCaption', tokenizer_name=_base_.lang_model_name, num_sample_negative=85,
               max_tokens=256, control_prob=(0.0, 0.0, 1.0, 0.0), background_name=None)
train_pipeline = _base_.finetune_load + [caption] + _base_.finetune_resize_flip
train_dataloader = dict(
    batch_sampler=None,  # the LVIS yaml turns aspect-ratio grouping off
    dataset=dict(
        type='LVISV1Dataset',
        data_root=_base_.data_root,
        ann_file='annotations/lvis_od_train.json',  # GLIP's copy of lvis_v1_train.json
        data_prefix=dict(img=''),  # images found through each entry's coco_url (train2017/ or val2017/)
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        return_classes=True,
        pipeline=train_pipeline))
train_cfg = dict(val_interval=2)
val_dataloader = dict(dataset=_base_.test_dataloader.dataset)
val_evaluator = _base_.test_evaluator
default_hooks = dict(checkpoint=dict(_base_.finetune_checkpoint_hook, interval=2))
