# FIBER-B zero-shot on ODinW-35: the 35 datasets in one run, COCO box AP ("+1" widths) per dataset and its mean over
# the 35 ('odinw35/bbox_mAP'). Datasets, splits, class names, caption prompts: ./_base_/odinw_datasets.py.
_base_ = './_base_/odinw_datasets.py'

test_dataloader = dict(dataset=dict(_delete_=True, **_base_.odinw['odinw35_test_set']))
test_evaluator = _base_.odinw['odinw35_evaluator']
odinw = None  # the table is picked from; keep it out of the final config
