# FIBER-B zero-shot COCO box AP on the ODinW dataset DroneControl (minival split).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['DroneControl'])
test_evaluator = _base_.odinw['odinw35_metrics']['DroneControl']
odinw = None  # the table is picked from; keep it out of the final config
