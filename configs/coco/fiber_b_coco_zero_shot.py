# FIBER-B on COCO val2017: the 80 names in one prompt, default post-processing (score 0.05,
# 1000 per level, NMS 0.6 with +1 widths, 100 per image), COCO AP with the original's w = x2 - x1 + 1.
_base_ = '../_base_/fiber_b_zero_shot.py'

data_root = 'data/coco/'
dataset_help = 'docs/datasets.md, section "Evaluation data", COCO'

test_dataloader = dict(
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        return_classes=True))
test_evaluator = dict(type='CocoPlusOneMetric', ann_file=data_root + 'annotations/instances_val2017.json')
