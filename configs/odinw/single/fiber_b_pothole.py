# FIBER-B zero-shot COCO box AP on the ODinW dataset pothole (val split, caption prompt).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['pothole'])
test_evaluator = _base_.odinw['odinw35_metrics']['pothole']
odinw = None  # the table is picked from; keep it out of the final config
