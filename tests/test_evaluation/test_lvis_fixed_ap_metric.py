"""LVISFixedAPRank0Metric against fixtures/eval/lvis_fixed_ap (original FIBER LvisEvaluatorFixedAP)."""
import json

import numpy as np
import pytest

from mmdet.datasets import LVISV1Dataset

from fiber_mmdet.evaluation import LVISFixedAPRank0Metric, numpy_float_alias_for_lvis

TOL = 1e-9
RESULT_KEYS = ['AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc', 'APf', 'AR', 'ARs', 'ARm', 'ARl']


def _samples(fixture_dir, make_sample):
    """One data sample per image in the dataset's order, labels mapped to mmdet's 0-based classes."""
    dataset = LVISV1Dataset(
        ann_file=str(fixture_dir / 'lvis_v1_minival_fixture.json'),
        data_prefix=dict(img=''),
        pipeline=[],
        test_mode=True)
    with open(fixture_dir / 'predictions.json') as f:
        predictions = {p['image_id']: p for p in json.load(f)['images']}
    samples = []
    for idx in range(len(dataset)):
        img_id = dataset.get_data_info(idx)['img_id']
        pred = predictions[img_id]
        labels = [dataset.cat2label[c] for c in pred['labels']]  # raw LVIS ids -> 0-based labels
        samples.append(make_sample(img_id, pred['boxes'], pred['scores'], labels))
    return samples


def _expected(fixture_dir, name, section):
    with open(fixture_dir / name) as f:
        results = json.load(f)[section]['results']
    return [results[k if k.startswith('AP') else f'{k}@-1'] for k in RESULT_KEYS]


@pytest.mark.parametrize('topk,expected_file,section', [(10000, 'expected.json', 'fixed_ap'),
                                                        (20, 'expected_cap20.json', 'fixed_ap_cap20')])
def test_matches_original_fiber_fixed_ap(eval_fixtures, make_sample, topk, expected_file, section):
    fixture_dir = eval_fixtures / 'lvis_fixed_ap'
    metric = LVISFixedAPRank0Metric(ann_file=str(fixture_dir / 'lvis_v1_minival_fixture.json'), topk=topk)
    samples = _samples(fixture_dir, make_sample)
    for sample in samples:
        metric.process({}, [sample])
    results = metric.evaluate(len(samples))
    got = [results[f'lvis_fixed_ap/{k}'] for k in RESULT_KEYS]
    np.testing.assert_allclose(got, _expected(fixture_dir, expected_file, section), rtol=0, atol=TOL)
    assert not hasattr(np, 'float') or 'float' in vars(np)  # the numpy shim is scoped


def test_cap_is_independent_of_rank_split_and_order(eval_fixtures, make_sample):
    """Two 'ranks' fed interleaved images in reverse order give the single-process result (cap 20, ties)."""
    fixture_dir = eval_fixtures / 'lvis_fixed_ap'
    ann_file = str(fixture_dir / 'lvis_v1_minival_fixture.json')
    samples = _samples(fixture_dir, make_sample)
    ranks = [LVISFixedAPRank0Metric(ann_file=ann_file, topk=20) for _ in range(2)]
    for i, sample in reversed(list(enumerate(samples))):
        ranks[i % 2].process({}, [sample])
    parts = [{cat: np.concatenate(chunks) for cat, chunks in rank._kept.items()} for rank in ranks]
    results = ranks[0].compute_metrics(parts)
    np.testing.assert_allclose([results[k] for k in RESULT_KEYS],
                               _expected(fixture_dir, 'expected_cap20.json', 'fixed_ap_cap20'),
                               rtol=0,
                               atol=TOL)


def _tiny_lvis(tmp_path):
    """One image, one category with two GT boxes; one more category without GT (negative in the image)."""
    ann = dict(
        images=[dict(id=1, width=100, height=100, neg_category_ids=[2], not_exhaustive_category_ids=[],
                     coco_url='http://x/val2017/000000000001.jpg')],
        categories=[dict(id=1, name='a', frequency='f', synset='a.n.01', synonyms=['a'], image_count=1,
                         instance_count=2),
                    dict(id=2, name='b', frequency='r', synset='b.n.01', synonyms=['b'], image_count=0,
                         instance_count=0)],
        annotations=[
            dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 40, 40], area=1600,
                 segmentation=[[0, 0, 40, 0, 40, 40, 0, 40]]),
            dict(id=2, image_id=1, category_id=1, bbox=[50, 50, 40, 40], area=1600,
                 segmentation=[[50, 50, 90, 50, 90, 90, 50, 90]]),
        ])
    path = tmp_path / 'tiny_lvis.json'
    path.write_text(json.dumps(ann))
    return str(path)


def test_per_category_cap_counts_over_the_split_not_per_image(tmp_path, make_sample):
    ann_file = _tiny_lvis(tmp_path)
    # Both true positives of category 1 score below three false positives: with a cap of 3 detections per
    # category over the split only the false positives survive (AP 0); with a cap of 5 both hits are kept, at
    # ranks 4 and 5 (interpolated precision 2/5 at every recall level -> AP 0.4).
    fps = [[60, 0, 99, 30], [0, 60, 30, 99], [70, 0, 99, 20]]
    hits = [[0, 0, 40, 40], [50, 50, 90, 90]]
    results = {}
    for topk in (3, 5):
        metric = LVISFixedAPRank0Metric(ann_file=ann_file, topk=topk)
        metric.process({}, [make_sample(1, fps + hits, [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5)])
        results[topk] = metric.evaluate(1)
    assert results[3]['lvis_fixed_ap/AP'] == 0.0
    assert results[5]['lvis_fixed_ap/AP'] == pytest.approx(0.4, abs=1e-12)
    # The cap does not consider the other category: a detection of category 2 (negative -> false positive
    # there) does not take a slot of category 1.
    metric = LVISFixedAPRank0Metric(ann_file=ann_file, topk=2)
    metric.process({}, [make_sample(1, [[0, 0, 5, 5]] + hits, [0.95, 0.6, 0.5], [1, 0, 0])])
    assert metric.evaluate(1)['lvis_fixed_ap/AP'] == pytest.approx(1.0)


def test_tie_keeps_the_smaller_image_id(tmp_path, make_sample):
    ann_file = _tiny_lvis(tmp_path)
    metric = LVISFixedAPRank0Metric(ann_file=ann_file, topk=1)
    # Same score; the later-fed detection has the smaller (image id, index) key and must win the only slot.
    metric.process({}, [make_sample(1, [[70, 0, 99, 20], [0, 0, 40, 40]], [0.5, 0.5], [0, 0])])
    kept = {cat: np.concatenate(chunks) for cat, chunks in metric._kept.items()}
    results = metric.compute_metrics([kept])
    assert results['AP'] == 0.0  # index 0 (the false positive) is kept, the tied true positive is dropped


def test_numpy_shim_is_scoped():
    had_alias = 'float' in vars(np)
    with numpy_float_alias_for_lvis():
        assert np.float is float
    assert ('float' in vars(np)) == had_alias
