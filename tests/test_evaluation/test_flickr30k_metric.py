"""Flickr30kRecallMetric against fixtures/eval/flickr (original FIBER/MDETR FlickrEvaluator)."""
import json

import numpy as np
import pytest

from mmdet.datasets import Flickr30kDataset

from fiber_mmdet.evaluation import Flickr30kRecallMetric, parse_flickr30k_sentences
from fiber_mmdet.evaluation.metrics.flickr30k_metric import NOT_GROUNDING

TOL = 1e-6


def _evaluate(fixture_dir, make_sample, **kwargs):
    """Feed the fixture's predictions as mmdet's Flickr30kDataset samples (label i = phrase i, 0-based)."""
    ann_file = str(fixture_dir / 'mdetr_annotations' / 'final_flickr_separateGT_test.json')
    dataset = Flickr30kDataset(ann_file=ann_file, data_prefix=dict(img=''), pipeline=[], test_mode=True)
    with open(fixture_dir / 'predictions.json') as f:
        predictions = {(p['image_id'], p['sentence_id']): p for p in json.load(f)['sentences']}
    metric = Flickr30kRecallMetric(**kwargs)
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        image = dataset.coco.imgs[info['img_id']]
        pred = predictions.get((image['original_img_id'], image['sentence_id']),
                               dict(boxes=[], scores=[], labels=[]))
        sample = make_sample(
            info['img_id'],
            pred['boxes'],
            pred['scores'], [label - 1 for label in pred['labels']],
            gt_bboxes=[inst['bbox'] for inst in info['instances']],
            phrase_ids=info['phrase_ids'],
            phrases=info['phrases'])
        metric.process({}, [sample])
    return metric.evaluate(len(dataset))


@pytest.mark.parametrize('merge_boxes', [False, True])
def test_matches_original_fiber_recall_per_type(eval_fixtures, make_sample, merge_boxes):
    fixture_dir = eval_fixtures / 'flickr'
    with open(fixture_dir / 'expected.json') as f:
        expected = json.load(f)[f'merge_boxes_{str(merge_boxes).lower()}']
    results = _evaluate(
        fixture_dir,
        make_sample,
        merge_boxes=merge_boxes,
        ann_file=str(fixture_dir / 'mdetr_annotations' / 'final_flickr_separateGT_test.json'),
        sentences_dir=str(fixture_dir / 'flickr30k_entities' / 'Sentences'))
    assert sorted(k.split('/', 1)[1] for k in results) == sorted(expected)
    for key, value in expected.items():
        assert results[f'flickr30k/{key}'] == pytest.approx(value, abs=TOL), key


def test_all_phrases_without_sentences(eval_fixtures, make_sample):
    fixture_dir = eval_fixtures / 'flickr'
    with open(fixture_dir / 'expected.json') as f:
        expected = json.load(f)['merge_boxes_false']
    results = _evaluate(fixture_dir, make_sample)
    assert set(results) == {'flickr30k/Recall@1_all', 'flickr30k/Recall@5_all', 'flickr30k/Recall@10_all',
                            'flickr30k/Upper_bound_all'}
    for key, value in results.items():
        assert isinstance(value, float)
        assert value == pytest.approx(expected[key.split('/', 1)[1]], abs=TOL)


def test_any_box_ranking_and_dummy_box(make_sample):
    metric = Flickr30kRecallMetric(topk=(1, 2, -1), prefix='f')
    gt = [[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]]
    sample = make_sample(
        0,
        # phrase 0: the best-scored box misses, the 2nd hits the phrase's SECOND GT box (any-box rule);
        # phrase 1: no detection at all (dummy box only); phrase 2 has no GT box (skipped).
        [[50, 50, 60, 61], [100, 100, 120, 120], [0, 0, 1, 1]],
        [0.4, 0.9, 0.1],
        [0, 0, 2],
        gt_bboxes=gt,
        phrase_ids=[0, 0, 1],
        phrases=['a dog', 'a cat', 'the sky'])
    metric.process({}, [sample])
    assert metric.evaluate(1) == {'f/Recall@1_all': 0.0, 'f/Recall@2_all': 0.5, 'f/Upper_bound_all': 0.5}


def test_merge_boxes_encloses_all_gt_boxes():
    merged = Flickr30kRecallMetric().merge_boxes(np.array([[5, 6, 10, 10], [0, 8, 7, 20]], dtype=np.float32))
    assert merged.tolist() == [[0, 6, 10, 20]]


def test_parse_sentences(tmp_path):
    path = tmp_path / '1.txt'
    path.write_text('[/EN#1/people/other A man] rides [/EN#0/notvisual it] .\n[/EN#2/scene The beach] .\n')
    assert parse_flickr30k_sentences(str(path)) == [{0: ['people', 'other'], 12: ['notvisual']}, {0: ['scene']}]


def test_samples_of_other_datasets_keep_their_place(make_sample):
    """In a multi-dataset evaluation every metric sees every sample; a detection sample (no phrase_ids) keeps
    a placeholder so the evaluator's per-dataset slices stay aligned, and is not scored."""
    metric = Flickr30kRecallMetric(topk=(1, -1), prefix='f')
    detection = make_sample(7, [[0, 0, 5, 5]], [0.5], [0], gt_bboxes=[[0, 0, 5, 5]])
    grounding = make_sample(0, [[0, 0, 10, 10]], [0.9], [0], gt_bboxes=[[0, 0, 10, 10]], phrase_ids=[0],
                            phrases=['a dog'])
    metric.process({}, [detection, grounding])
    assert metric.results[0] == NOT_GROUNDING and len(metric.results) == 2
    assert metric.evaluate(2) == {'f/Recall@1_all': 1.0, 'f/Upper_bound_all': 1.0}
