# FIBER-B fine-tuned on your own COCO-format data (README, "Fine-tune on your own data"): a folder with
#   DATA_ROOT/annotations/train.json   COCO instances json (images, annotations with xywh boxes, categories)
#   DATA_ROOT/annotations/val.json     the same for validation (it may be the same file as train.json)
#   DATA_ROOT/images/                  the image files, found by each image's file_name
# Class names come from the json's categories (or --cfg-options "train_dataloader.dataset.metainfo.classes=...";
# the same for val / test); every training caption lists them in label order (cleaned: "traffic_light" ->
# "traffic light"), prediction prompts with them verbatim. The recipe is FIBER's ODinW full-data recipe (lr 1e-4,
# text 1e-5, weight decay 0.05, stage 0 frozen, global batch 4, up to 200 epochs: lr x0.1 on a plateau of the
# validation AP, early stop after 8 validations below the best, best checkpoint kept).
#   python tools/train.py configs/custom/fiber_b_custom_finetune.py --cfg-options data_root=data/my_dataset/ \
#       load_from=checkpoints/fiber_b_mmdet.pth
#   python tools/test.py configs/custom/fiber_b_custom_finetune.py work_dirs/fiber_b_custom_finetune/best_*.pth \
#       --cfg-options data_root=data/my_dataset/
# `data_root=...` re-points every path of this config that starts with the default data root. Optional caption
# prompts per class, e.g. {'hole': dict(prefix='there are some ', suffix=' on the road')}: set `caption_prompt`
# below (in a copy of this file).
_base_ = '../odinw/_base_/odinw_finetune.py'

data_root = 'data/custom/'
load_from = 'checkpoints/fiber_b_mmdet.pth'
caption_prompt = None
dataset_help = {
    'checkpoints': 'README.md, section "Converting an official checkpoint" (the fine-grained FIBER-B model)',
    'default': 'README.md, section "Fine-tune on your own data" (set data_root with --cfg-options data_root=...)',
}


def _split(ann_file: str, test_mode: bool, pipeline: list) -> dict:
    dataset = dict(type='CheckedCocoDataset', data_root=data_root, ann_file=ann_file, data_prefix=dict(img='images/'),
                   return_classes=True, test_mode=test_mode, pipeline=pipeline)
    if caption_prompt:
        dataset['caption_prompt'] = caption_prompt
    if not test_mode:
        dataset['filter_cfg'] = dict(filter_empty_gt=True, min_size=1)
    return dataset


train_dataloader = dict(dataset=_split('annotations/train.json', False, _base_.train_pipeline))
val_dataloader = dict(dataset=_split('annotations/val.json', True, _base_.test_pipeline))
test_dataloader = dict(dataset=dict(_delete_=True, **_split('annotations/val.json', True, _base_.test_pipeline)))
val_evaluator = dict(type='CocoPlusOneMetric', ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
odinw = None  # the ODinW tables of the base; not used here
finetune_tables = None
finetune_protocol = None
