# RefCOCO / RefCOCO+ / RefCOCOg evaluation with FIBER-B v3, MDETR's annotation files
# (data/coco/mdetr_annotations/finetune_<dataset>_<split>.json; images from COCO train2014): the expression is
# the prompt and all its tokens form the one label; top-1 after NMS with score threshold 0 and 3000 boxes before
# NMS; accuracy = generalized IoU >= 0.5 (P@1), per split. Each config picks one benchmark from the tables below.
_base_ = '../../_base_/fiber_b_zero_shot.py'

data_root = 'data/coco/'
dataset_help = 'docs/datasets.md, section "Evaluation data", RefCOCO/+/g'

model = dict(
    backbone=dict(i2t_query_norm=True),  # v3: the released RefCOCO models normalise the image->text queries
    test_cfg=dict(nms_pre=3000, score_thr=0.0, max_per_img=100))

__refexp_files = {
    'refcoco_val': 'finetune_refcoco_val.json',
    'refcoco_testA': 'finetune_refcoco_testA.json',
    'refcoco_testB': 'finetune_refcoco_testB.json',
    'refcoco+_val': 'finetune_refcoco+_val.json',
    'refcoco+_testA': 'finetune_refcoco+_testA.json',
    'refcoco+_testB': 'finetune_refcoco+_testB.json',
    'refcocog_val': 'finetune_refcocog_val.json',
    'refcocog_test': 'finetune_refcocog_test_corrected.json',  # the file FIBER evaluates
}
__refexp_datasets = {
    split: dict(type='MDETRStyleRefCocoDataset', data_root=data_root, ann_file='mdetr_annotations/' + name,
                data_prefix=dict(img='train2014/'), test_mode=True, pipeline=_base_.test_pipeline)
    for split, name in __refexp_files.items()
}
__refexp_metrics = {
    split: dict(type='GIoURefExpMetric', ann_file=data_root + 'mdetr_annotations/' + name, topk=(1, 5, 10))
    for split, name in __refexp_files.items()
}

# The three benchmarks, each evaluated split by split in one run (one SharedPipelineConcatDataset + one metric per split).
__refexp_benchmarks = {
    'refcoco': ('refcoco_val', 'refcoco_testA', 'refcoco_testB'),
    'refcoco+': ('refcoco+_val', 'refcoco+_testA', 'refcoco+_testB'),
    'refcocog': ('refcocog_val', 'refcocog_test'),
}
__refexp_test_sets = {
    name: dict(type='SharedPipelineConcatDataset', pipeline=_base_.test_pipeline,  # what DetInferencer reads
               datasets=[{k: v for k, v in __refexp_datasets[split].items() if k != 'pipeline'}
                         for split in splits])
    for name, splits in __refexp_benchmarks.items()
}
__refexp_evaluators = {
    name: dict(type='MultiDatasetsAverageEvaluator', metrics=[__refexp_metrics[split] for split in splits],
               dataset_prefixes=list(splits), average_keys=())
    for name, splits in __refexp_benchmarks.items()
}

# What the configs in ../ pick from, under one key; each sets ``refexp = None`` once it has picked, so that its
# final config (printed and dumped by MMEngine) holds only the splits it runs.
refexp = dict(files=__refexp_files, datasets=__refexp_datasets, metrics=__refexp_metrics,
              benchmarks=__refexp_benchmarks, test_sets=__refexp_test_sets, evaluators=__refexp_evaluators)
