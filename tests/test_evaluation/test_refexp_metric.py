"""GIoURefExpMetric against fixtures/eval/refexp (original FIBER/MDETR RefExpEvaluator, GIoU >= 0.5)."""
import json

import numpy as np
import pytest

from mmdet.datasets import MDETRStyleRefCocoDataset

from fiber_mmdet.evaluation import GIoURefExpMetric, rank_by_score_then_box

TOL = 1e-6


def _evaluate(fixture_dir, make_sample, **kwargs):
    ann_file = str(fixture_dir / 'final_refexp_val.json')
    dataset = MDETRStyleRefCocoDataset(ann_file=ann_file, data_prefix=dict(img=''), pipeline=[], test_mode=True)
    with open(fixture_dir / 'predictions.json') as f:
        predictions = {p['image_id']: p for p in json.load(f)['expressions']}
    metric = GIoURefExpMetric(ann_file=ann_file, **kwargs)
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        pred = predictions[info['img_id']]
        # one phrase per expression: label 0
        metric.process({}, [make_sample(info['img_id'], pred['boxes'], pred['scores'], [0] * len(pred['scores']))])
    return metric.evaluate(len(dataset))


def test_matches_original_fiber_precision(eval_fixtures, make_sample):
    fixture_dir = eval_fixtures / 'refexp'
    with open(fixture_dir / 'expected.json') as f:
        expected = json.load(f)['results']
    results = _evaluate(fixture_dir, make_sample)
    for split, values in expected.items():
        got = [results[f'refexp/{split}_precision@{k}'] for k in (1, 5, 10)]
        np.testing.assert_allclose(got, values, rtol=0, atol=TOL, err_msg=split)
    for i, k in enumerate((1, 5, 10)):
        assert results[f'refexp/mean_precision@{k}'] == pytest.approx(
            np.mean([v[i] for v in expected.values()]), abs=TOL)
    assert results['refexp/mean_precision'] == pytest.approx(np.mean(list(expected.values())), abs=TOL)


def test_mean_is_over_the_splits_that_ran(tmp_path, make_sample):
    ann = dict(
        images=[dict(id=i, file_name=f'{i}.jpg', height=100, width=100, caption='x', dataset_name='refcoco+')
                for i in range(2)],
        annotations=[dict(id=i, image_id=i, category_id=1, bbox=[10, 10, 50, 50], area=2500, iscrowd=0)
                     for i in range(2)],
        categories=[dict(id=1, name='object')])
    ann_file = tmp_path / 'refcoco+_val.json'
    ann_file.write_text(json.dumps(ann))
    metric = GIoURefExpMetric(ann_file=str(ann_file), topk=(1, 5))
    metric.process({}, [make_sample(0, [[10, 10, 60, 60]], [0.9], [0]), make_sample(1, [[70, 70, 90, 90]], [0.9], [0])])
    results = metric.evaluate(2)
    assert results == {
        'refexp/refcoco+_precision@1': 0.5,
        'refexp/refcoco+_precision@5': 0.5,
        'refexp/mean_precision@1': 0.5,
        'refexp/mean_precision@5': 0.5,
        'refexp/mean_precision': 0.5,
    }


def test_giou_is_stricter_than_iou(tmp_path, make_sample):
    # GT [0, 0, 100, 100]. Prediction [17, 17, 117, 117]: intersection 83^2 = 6889, union 13111,
    # IoU 0.5254 >= 0.5, but the enclosing box (117^2 = 13689) exceeds the union, GIoU = 0.5254 - 578 / 13689
    # = 0.4832 < 0.5 -> miss. Prediction [10, 10, 110, 110]: IoU 0.6807, GIoU 0.6641 -> hit.
    ann = dict(
        images=[dict(id=0, file_name='0.jpg', height=200, width=200, caption='x', dataset_name='refcoco')],
        annotations=[dict(id=0, image_id=0, category_id=1, bbox=[0, 0, 100, 100], area=10000, iscrowd=0)],
        categories=[dict(id=1, name='object')])
    ann_file = tmp_path / 'ref.json'
    ann_file.write_text(json.dumps(ann))
    metric = GIoURefExpMetric(ann_file=str(ann_file), topk=(1, ))
    metric.process({}, [make_sample(0, [[17, 17, 117, 117]], [0.9], [0])])
    assert metric.evaluate(1)['refexp/refcoco_precision@1'] == 0.0
    metric.process({}, [make_sample(0, [[10, 10, 110, 110]], [0.9], [0])])
    assert metric.evaluate(1)['refexp/refcoco_precision@1'] == 1.0


def test_ranking_breaks_score_ties_by_the_box_tuple():
    bboxes = np.array([[1, 0, 5, 5], [3, 0, 5, 5], [2, 9, 9, 9], [3, 0, 4, 9]], dtype=np.float32)
    scores = np.array([0.5, 0.5, 0.7, 0.5], dtype=np.float32)
    assert rank_by_score_then_box(bboxes, scores).tolist() == [2, 1, 3, 0]
