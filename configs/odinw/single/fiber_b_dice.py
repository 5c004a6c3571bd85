# FIBER-B zero-shot COCO box AP on the ODinW dataset dice (val split).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['dice'])
test_evaluator = _base_.odinw['odinw35_metrics']['dice']
odinw = None  # the table is picked from; keep it out of the final config
