# FIBER-B zero-shot COCO box AP on the ODinW dataset OxfordPets_by_species (minival split).
_base_ = '../_base_/odinw_datasets.py'
test_dataloader = dict(dataset=_base_.odinw['odinw35_datasets']['OxfordPets_by_species'])
test_evaluator = _base_.odinw['odinw35_metrics']['OxfordPets_by_species']
odinw = None  # the table is picked from; keep it out of the final config
