# FIBER-B zero-shot COCO box AP on the ODinW dataset NorthAmericaMushrooms (val split, ODinW-35 class names).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['NorthAmericaMushrooms'])
test_evaluator = _base_.odinw['odinw35_metrics']['NorthAmericaMushrooms']
odinw = None  # the table is picked from; keep it out of the final config
