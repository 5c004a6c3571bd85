# FIBER-B zero-shot COCO box AP on the ODinW dataset EgoHands_generic (minival split, caption prompt).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['EgoHands_generic'])
test_evaluator = _base_.odinw['odinw35_metrics']['EgoHands_generic']
odinw = None  # the table is picked from; keep it out of the final config
