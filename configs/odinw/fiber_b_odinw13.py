# FIBER-B zero-shot on ODinW-13: the 13 datasets in one run, COCO box AP ("+1" widths) per dataset and
# its mean over the 13 ('odinw13/bbox_mAP'). Datasets, splits, class names, caption prompts: ./_base_/odinw_datasets.py.
_base_ = './_base_/odinw_datasets.py'

test_dataloader = dict(dataset=dict(_delete_=True, **_base_.odinw['odinw13_test_set']))
test_evaluator = _base_.odinw['odinw13_evaluator']
odinw = None  # the table is picked from; keep it out of the final config
