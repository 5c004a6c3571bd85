"""The COCO, LVIS, RefCOCO/+/g and Flickr30k zero-shot configs carry FIBER's evaluation protocols."""
import os.path as osp

import pytest
from mmengine.config import Config

from fiber_mmdet.engine.data_files import check_data_files


def _load(repo_root, *parts):
    return Config.fromfile(osp.join(repo_root, 'configs', *parts))


def test_coco_protocol(repo_root):
    cfg = _load(repo_root, 'coco', 'fiber_b_coco_zero_shot.py')
    t = cfg.model.test_cfg
    assert (t.score_thr, t.nms_pre, t.max_per_img, t.chunked_size) == (0.05, 1000, 100, -1)
    assert t.nms == dict(type='nms', iou_threshold=0.6, offset=1)
    assert cfg.test_dataloader.batch_size == 1 and cfg.test_dataloader.dataset.return_classes
    assert cfg.test_evaluator.type == 'CocoPlusOneMetric'
    assert cfg.test_evaluator.ann_file == osp.join(cfg.data_root, cfg.test_dataloader.dataset.ann_file)


@pytest.mark.parametrize('name,ann', [('minival', 'lvis_v1_minival_inserted_image_name.json'),
                                      ('val', 'lvis_od_val.json')])
def test_lvis_fixed_ap_protocol(repo_root, name, ann):
    cfg = _load(repo_root, 'lvis', f'fiber_b_lvis_{name}_fixed_ap.py')
    assert cfg.model.test_cfg.chunked_size == 40 and cfg.model.test_cfg.max_per_img == 300
    assert cfg.test_dataloader.dataset.type == 'LVISV1Dataset'
    assert cfg.test_dataloader.dataset.ann_file.endswith(ann)
    assert cfg.test_evaluator == dict(type='LVISFixedAPRank0Metric', ann_file='data/coco/annotations/' + ann,
                                      topk=10000)


@pytest.mark.parametrize('name,splits', [
    ('refcoco', ['refcoco_val', 'refcoco_testA', 'refcoco_testB']),
    ('refcoco_plus', ['refcoco+_val', 'refcoco+_testA', 'refcoco+_testB']),
    ('refcocog', ['refcocog_val', 'refcocog_test']),
])
def test_refexp_protocol(repo_root, name, splits):
    cfg = _load(repo_root, 'refcoco', f'fiber_b_v3_{name}.py')
    assert cfg.model.backbone.i2t_query_norm  # the released RefCOCO models are v3
    t = cfg.model.test_cfg
    assert (t.nms_pre, t.score_thr, t.max_per_img) == (3000, 0.0, 100)
    datasets = cfg.test_dataloader.dataset.datasets
    assert cfg.test_dataloader.dataset.type == 'SharedPipelineConcatDataset' and set(cfg.test_dataloader.dataset) == {
        'type', 'pipeline', 'datasets'}  # one pipeline for all splits, what DetInferencer reads
    assert cfg.test_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile'
    assert all('pipeline' not in d for d in datasets)
    assert cfg.test_evaluator.dataset_prefixes == splits
    assert cfg.refexp is None  # the split tables stay out of the final config
    for split, dataset, metric in zip(splits, datasets, cfg.test_evaluator.metrics):
        assert dataset.type == 'MDETRStyleRefCocoDataset' and dataset.data_prefix.img == 'train2014/'
        assert metric.type == 'GIoURefExpMetric' and metric.ann_file == dataset.data_root + dataset.ann_file
        dataset_name, split_name = split.split('_')
        expected = f'finetune_{dataset_name}_{split_name}.json'
        if split == 'refcocog_test':
            expected = 'finetune_refcocog_test_corrected.json'
        assert dataset.ann_file == 'mdetr_annotations/' + expected


@pytest.mark.parametrize('split', ['val', 'test'])
def test_flickr30k_protocol(repo_root, split):
    cfg = _load(repo_root, 'flickr30k', f'fiber_b_flickr30k_{split}.py')
    assert cfg.test_dataloader.dataset.type == 'Flickr30kDataset'
    assert cfg.test_dataloader.dataset.ann_file == f'final_flickr_separateGT_{split}.json'
    assert cfg.model.test_cfg.max_per_img == 100 and cfg.model.test_cfg.score_thr == 0.05
    assert cfg.test_evaluator == dict(type='Flickr30kRecallMetric', topk=(1, 5, 10, -1))
    assert {'phrases', 'phrase_ids', 'tokens_positive'} <= set(cfg.test_pipeline[-1].meta_keys)


def test_missing_data_is_reported_with_its_docs_section(repo_root, tmp_path):
    cfg = _load(repo_root, 'lvis', 'fiber_b_lvis_minival_fixed_ap.py')
    cfg.test_dataloader.dataset.data_root = str(tmp_path) + '/'
    cfg.test_evaluator.ann_file = str(tmp_path / cfg.test_dataloader.dataset.ann_file)
    with pytest.raises(FileNotFoundError) as error:
        check_data_files(cfg, ['test'])
    message = str(error.value)
    assert message.startswith('1 data path(s)')  # the folder exists, the annotation file does not
    assert str(tmp_path / 'annotations' / 'lvis_v1_minival_inserted_image_name.json') in message
    assert 'docs/datasets.md, section "Evaluation data", LVIS' in message
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'lvis_v1_minival_inserted_image_name.json').write_text('{}')
    check_data_files(cfg, ['test'])  # everything there: no error


def test_training_names_the_converter_of_a_missing_file(repo_root):
    cfg = _load(repo_root, 'fiber_fine_pretrain.py')
    with pytest.raises(FileNotFoundError) as error:
        check_data_files(cfg, ['train'])
    message = str(error.value)
    assert "data/objects365v1/objects365_train_od.json  (annotation file of train_dataloader.dataset[0] " \
           "(FilteredODVGDataset); see tools/dataset_converters/README.md: mmdet's coco2odvg.py" in message
    assert 'final_mixed_train_no_coco_vg.json' in message and "goldg2odvg.py" in message
    assert 'checkpoints/fiber_coarse_init_mmdet.pth  (checkpoint to start from (load_from)' in message
