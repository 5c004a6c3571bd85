# FIBER-B zero-shot COCO box AP on the ODinW dataset openPoetryVision (minival split).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['openPoetryVision'])
test_evaluator = _base_.odinw['odinw35_metrics']['openPoetryVision']
odinw = None  # the table is picked from; keep it out of the final config
