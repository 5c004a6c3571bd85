"""CocoPlusOneMetric against fixtures/eval/coco_det (original FIBER COCO evaluation, +1 box widths)."""
import json

import numpy as np
import pytest

from mmdet.datasets import CocoDataset

from fiber_mmdet.evaluation import CocoPlusOneMetric

STAT_KEYS = ['bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l', 'bbox_AR@1',
             'bbox_AR@10', 'bbox_AR@100', 'bbox_AR_s@100', 'bbox_AR_m@100', 'bbox_AR_l@100']
TOL = 1e-6


def _run(fixture_dir, make_sample, **metric_kwargs):
    ann_file = str(fixture_dir / 'instances_fixture.json')
    with open(ann_file) as f:
        classes = tuple(c['name'] for c in json.load(f)['categories'])
    dataset = CocoDataset(
        ann_file=ann_file, metainfo=dict(classes=classes), data_prefix=dict(img=''), pipeline=[], test_mode=True)
    with open(fixture_dir / 'predictions.json') as f:
        predictions = {p['image_id']: p for p in json.load(f)['images']}

    metric = CocoPlusOneMetric(ann_file=ann_file, **metric_kwargs)
    metric.dataset_meta = dataset.metainfo
    for idx in range(len(dataset)):  # dataset order, as a test loop would feed them
        info = dataset.get_data_info(idx)
        pred = predictions.get(info['img_id'], dict(boxes=[], scores=[], category_ids=[]))
        labels = [dataset.cat2label[c] for c in pred['category_ids']]
        metric.process({}, [make_sample(info['img_id'], pred['boxes'], pred['scores'], labels,
                                        ori_shape=(info['height'], info['width']))])
    return metric.evaluate(len(dataset))


def test_matches_original_fiber_stats(eval_fixtures, make_sample):
    fixture_dir = eval_fixtures / 'coco_det'
    with open(fixture_dir / 'expected.json') as f:
        expected = json.load(f)['stats']
    results = _run(fixture_dir, make_sample)
    got = [results[f'coco/{k}'] for k in STAT_KEYS]
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


def test_without_plus_one_matches_plain_conversion(eval_fixtures, make_sample):
    fixture_dir = eval_fixtures / 'coco_det'
    with open(fixture_dir / 'expected.json') as f:
        expected = json.load(f)['diagnostics']['stats_without_plus1_NOT_THE_PROTOCOL']
    results = _run(fixture_dir, make_sample, box_plus_one=False, prefix='plain')
    np.testing.assert_allclose([results[f'plain/{k}'] for k in STAT_KEYS], expected, rtol=0, atol=TOL)


def test_written_detections_match_original_json(eval_fixtures, make_sample, tmp_path):
    fixture_dir = eval_fixtures / 'coco_det'
    results = _run(fixture_dir, make_sample, format_only=True, outfile_prefix=str(tmp_path / 'dets'))
    assert results == {}
    with open(tmp_path / 'dets.bbox.json') as f:
        ours = json.load(f)
    with open(fixture_dir / 'coco_results.json') as f:
        original = json.load(f)

    def key(d):
        return (d['image_id'], d['category_id'], d['score'], tuple(d['bbox']))

    assert sorted(map(key, ours)) == sorted(map(key, original))


def test_plus_one_conversion_and_argument_checks():
    metric = CocoPlusOneMetric()
    assert metric.xyxy2xywh(np.array([10., 20., 30., 60.], dtype=np.float32)) == [10., 20., 21., 41.]
    metric = CocoPlusOneMetric(box_plus_one=False)
    assert metric.xyxy2xywh(np.array([10., 20., 30., 60.], dtype=np.float32)) == [10., 20., 20., 40.]
    with pytest.raises(ValueError):
        CocoPlusOneMetric(metric='segm')
    with pytest.raises(KeyError):
        CocoPlusOneMetric(metric_items=['AR@1000'])


def test_no_detection_at_all_scores_zero(eval_fixtures, make_sample):
    """A model that detects nothing (e.g. early in few-shot fine-tuning) gets AP 0, not a missing key: the
    plateau scheduler, the early stop and save_best of the ODinW protocol must count that validation."""
    fixture_dir = eval_fixtures / 'coco_det'
    ann_file = str(fixture_dir / 'instances_fixture.json')
    with open(ann_file) as f:
        data = json.load(f)
    classes = tuple(c['name'] for c in data['categories'])
    metric = CocoPlusOneMetric(ann_file=ann_file)
    metric.dataset_meta = dict(classes=classes)
    for image in data['images']:
        metric.process({}, [make_sample(image['id'], [], [], [], ori_shape=(image['height'], image['width']))])
    results = metric.evaluate(len(data['images']))
    assert results == {f'coco/{key}': 0.0 for key in STAT_KEYS}
