# FIBER-B zero-shot on ODinW-13 (spec §8.3): the 13 datasets in one run, COCO box AP ("+1" widths) per dataset and
# its mean over the 13 ('odinw13/bbox_mAP'). Datasets, splits, class names, caption prompts: ./_base_/odinw_datasets.py.
_base_ = './_base_/odinw_datasets.py'

test_dataloader = dict(
    dataset=dict(
        _delete_=True, type='ConcatDataset', datasets=[_base_.odinw13_datasets[n] for n in _base_.odinw13_names]))
test_evaluator = dict(
    type='MultiDatasetsAverageEvaluator',
    metrics=[_base_.odinw13_metrics[n] for n in _base_.odinw13_names],
    dataset_prefixes=_base_.odinw13_names,
    average_keys=('bbox_mAP', 'bbox_mAP_50'),
    average_prefix='odinw13')
