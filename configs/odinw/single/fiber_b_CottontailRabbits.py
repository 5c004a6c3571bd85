# FIBER-B zero-shot COCO box AP on the ODinW dataset CottontailRabbits (val split, ODinW-35 class names).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['CottontailRabbits'])
test_evaluator = _base_.odinw['odinw35_metrics']['CottontailRabbits']
odinw = None  # the table is picked from; keep it out of the final config
