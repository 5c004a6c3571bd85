# FIBER-B fine-tuned on COCO train2017 (COCO.yaml): from the fine-grained pre-trained checkpoint, every
# training caption lists the 80 cleaned class names in a new random order, flip 0.5, 24 epochs at a
# global batch of 32 (8 GPUs x 4), validated every epoch on val2017 with the zero-shot protocol (one prompt of the
# 80 names, COCO AP with +1 widths), best checkpoint kept. Published: 58.4 AP.
#   bash tools/dist_train.sh configs/coco/fiber_b_coco_finetune.py 8
_base_ = ['./fiber_b_coco_zero_shot.py', '../_base_/fiber_b_finetune.py']

# the fine-grained FIBER-B checkpoint, converted (README, "Converting an official checkpoint")
load_from = 'checkpoints/fiber_b_mmdet.pth'
dataset_help = {
    '_delete_': True,  # the zero-shot base's help is one string
    'checkpoints': 'README.md, section "Converting an official checkpoint" (the fine-grained FIBER-B model)',
    'train2017': 'docs/datasets.md, section "Fine-tuning data", COCO (cocodataset.org 2017 train images)',
    'instances_train2017': 'docs/datasets.md, section "Fine-tuning data", COCO (2017 train annotations)',
    'default': 'docs/datasets.md, section "Evaluation data", COCO',
}
model = dict(backbone=dict(with_cp=True))  # activation checkpointing in the backbone, as the original

train_pipeline = _base_.finetune_load + [dict(type='ClassNamesToCaption', shuffle=True)] + _base_.finetune_resize_flip
train_dataloader = dict(
    dataset=dict(
        type='FilteredCocoDataset',  # CocoDataset that counts the boxes and images it leaves out
        data_root=_base_.data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),  # images without boxes are removed, as the original
        return_classes=True,
        pipeline=train_pipeline))
val_dataloader = dict(dataset=_base_.test_dataloader.dataset)
val_evaluator = _base_.test_evaluator
default_hooks = dict(checkpoint=_base_.finetune_checkpoint_hook)
