# FIBER-B zero-shot COCO box AP on the ODinW dataset Packages (val split, caption prompt).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['Packages'])
test_evaluator = _base_.odinw['odinw35_metrics']['Packages']
odinw = None  # the table is picked from; keep it out of the final config
