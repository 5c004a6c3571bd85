# FIBER-B v3 on RefCOCO, every split in one run, P@1/5/10 per split (see _base_/refexp_splits.py).
_base_ = './_base_/refexp_splits.py'

splits = ('refcoco_val', 'refcoco_testA', 'refcoco_testB')
test_dataloader = dict(
    dataset=dict(_delete_=True, type='ConcatDataset',
                 datasets=[_base_.refexp_datasets[split] for split in splits]))
test_evaluator = dict(
    type='MultiDatasetsAverageEvaluator',
    metrics=[_base_.refexp_metrics[split] for split in splits],
    dataset_prefixes=list(splits),
    average_keys=())
