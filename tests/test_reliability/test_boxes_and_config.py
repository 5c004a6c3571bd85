"""Boxes are never dropped without a count; a data_root override reaches every path; the tokenizer must fit the
text model's embedding table."""
import copy
import json

import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmdet.registry import MODELS
from fiber_mmdet.datasets import FilteredCocoDataset, FilteredODVGDataset
from fiber_mmdet.engine.data_root import override_data_root
from fiber_mmdet.evaluation.metrics.coco_plus_one_metric import (gt_boxes_outside_images,
                                                                 warn_gt_boxes_outside_images)
from .conftest import Records, TOY_CONFIG


def test_odvg_counts_every_dropped_box_per_reason(tmp_path):
    lines = [
        dict(filename='a.jpg', height=100, width=100, detection=dict(instances=[
            dict(bbox=[10, 10, 50, 50], label=0), dict(bbox=[120, 10, 150, 50], label=0),  # outside the image
            dict(bbox=[10, 10, 10, 50], label=1), dict(bbox=[30, 10, 20, 50], label=1),  # zero area, negative
            dict(bbox=[10, 10, 40, 40], label=7)])),  # unknown category
        dict(filename='b.jpg', height=100, width=100, detection=dict(instances=[
            dict(bbox=[10, 10, 10.5, 50], label=0)])),  # < 1 px: the image is left without boxes
    ]
    (tmp_path / 'od.jsonl').write_text('\n'.join(json.dumps(line) for line in lines))
    (tmp_path / 'labels.json').write_text(json.dumps({'0': 'cat', '1': 'dog'}))
    records = Records()
    MMLogger.get_current_instance().addHandler(records)
    try:
        dataset = FilteredODVGDataset(data_root=str(tmp_path), ann_file='od.jsonl', label_map_file='labels.json',
                                      pipeline=[])
    finally:
        MMLogger.get_current_instance().removeHandler(records)
    assert dataset.box_drops == {'negative size': 1, 'outside the image': 1, 'smaller than 1 px': 1,
                                 'unknown category': 1, 'zero area': 1}
    assert len(dataset) == 1 and dataset.num_filtered_images == 1
    assert [i['bbox'] for i in dataset.get_data_info(0)['instances']] == [[10, 10, 50, 50]]
    log = '\n'.join(records.messages)
    assert ('left out 5 boxes: negative size 1, outside the image 1, smaller than 1 px 1, unknown category 1, '
            'zero area 1') in log
    assert 'kept 1 of 2 images, removed 1 without boxes' in log


def test_coco_dataset_counts_every_dropped_box_and_box_less_image(tmp_path):
    def ann(i, image, bbox, category=1, area=None):
        return dict(id=i, image_id=image, category_id=category, bbox=bbox, iscrowd=0,
                    area=bbox[2] * bbox[3] if area is None else area)
    coco = dict(
        images=[dict(id=1, width=100, height=80, file_name='a.jpg'), dict(id=2, width=100, height=80,
                                                                        file_name='b.jpg')],
        categories=[dict(id=1, name='cat'), dict(id=2, name='dog')],
        annotations=[ann(1, 1, [10, 10, 20, 20]), ann(2, 1, [120, 10, 20, 20]), ann(3, 1, [10, 10, 0, 20]),
                     ann(4, 1, [10, 10, -5, 20]), ann(5, 1, [10, 10, 20, 20], area=0),
                     ann(6, 2, [10, 10, 0.5, 20]), ann(7, 1, [10, 10, 20, 20], category=2)])
    (tmp_path / 'ann.json').write_text(json.dumps(coco))
    records = Records()
    MMLogger.get_current_instance().addHandler(records)
    try:
        dataset = FilteredCocoDataset(data_root=str(tmp_path), ann_file='ann.json', data_prefix=dict(img=''),
                                      metainfo=dict(classes=('cat', )),
                                      filter_cfg=dict(filter_empty_gt=True), pipeline=[])
    finally:
        MMLogger.get_current_instance().removeHandler(records)
    assert dataset.box_drops == {'negative size': 1, 'outside the image': 1, 'smaller than 1 px': 1,
                                 'unknown category': 1, 'zero area': 2}
    # image 2 lost its only box: mmdet's CocoDataset keeps it (its category is listed); this one removes it
    assert len(dataset) == 1 and [i['bbox'] for i in dataset.get_data_info(0)['instances']] == [[10, 10, 30, 30]]
    log = '\n'.join(records.messages)
    assert 'left out 6 boxes: negative size 1, outside the image 1, smaller than 1 px 1, unknown category 1, ' \
           'zero area 2' in log
    assert 'kept 1 of 2 images, removed 1 (1 whose boxes were all left out)' in log


def test_coco_ground_truth_outside_the_image_is_found(tmp_path):
    from mmdet.datasets.api_wrappers import COCO
    ann = dict(images=[dict(id=1, width=100, height=80, file_name='a.jpg')], categories=[dict(id=1, name='x')],
               annotations=[dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 20, 20], area=400, iscrowd=0),
                            dict(id=2, image_id=1, category_id=1, bbox=[90, 10, 20, 20], area=400, iscrowd=0),
                            dict(id=3, image_id=1, category_id=1, bbox=[-5, 70, 20, 20], area=400, iscrowd=0)])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(ann))
    coco = COCO(str(path))
    assert gt_boxes_outside_images(coco) == [2, 3]
    records = Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        warn_gt_boxes_outside_images(coco, str(path), logger)
    finally:
        logger.removeHandler(records)
    assert records.messages == [f'{path}: 2 ground-truth box(es) in 1 image(s) reach outside their image (annotation '
                                'ids [2, 3], image ids [1]); they are evaluated as annotated and can lower AP']


def test_data_root_override_moves_every_path_of_the_toy_config():
    cfg = Config.fromfile(TOY_CONFIG)
    moved = override_data_root(cfg, 'data_root', '/elsewhere/toy')
    text = cfg.pretty_text
    assert moved >= 10 and 'data/toy_shapes' not in text
    assert cfg.val_evaluator.metrics[0].ann_file == '/elsewhere/toy/annotations/val_coco.json'
    assert cfg.model.language_model.tokenizer == '/elsewhere/toy/tokenizer'
    assert all(d.data_root == '/elsewhere/toy/' for d in cfg.train_dataloader.dataset.datasets)


def test_data_root_override_without_such_paths_is_rejected():
    cfg = Config(dict(odinw_data_root='data/odinw/', test_dataloader=dict(dataset=dict(data_root='x/'))))
    with pytest.raises(ValueError, match=r"has no top-level data_root.*its data roots are \['odinw_data_root'\]"):
        override_data_root(cfg, 'data_root', '/elsewhere/')
    with pytest.raises(ValueError, match='no path of the config starts with its odinw_data_root'):
        override_data_root(cfg, 'odinw_data_root', '/elsewhere/')


def test_tokenizer_larger_than_the_embedding_table_is_rejected(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg.language_model)
    cfg.config.vocab_size = 100  # the test tokenizer has 400 ids
    with pytest.raises(ValueError, match=r"has \d+ token ids but the text model's embedding table has 100 rows"):
        MODELS.build(cfg)
