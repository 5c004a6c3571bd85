"""A multi-dataset evaluation under two gloo ranks with an uneven split: every metric sees every sample and keeps
a placeholder for the samples of other datasets, so that the evaluator's per-dataset slices stay aligned. MMEngine's
``collect_results`` drops ``None`` entries when it merges the ranks' results, so a ``None`` placeholder shifted the
slices under several ranks (each dataset then scored some of its neighbour's samples)."""
import pytest
from mmengine.dataset import DefaultSampler

from fiber_mmdet.evaluation import MultiDatasetsAverageEvaluator
from ..test_engine.dist_helpers import run_on_ranks

GT = [[0, 0, 10, 10]]
HIT, MISS = [[0, 0, 10, 10]], [[50, 50, 60, 60]]


def _samples(make_sample):
    """Dataset ``a``: a grounded phrase found, then a detection sample; dataset ``b``: two phrases missed, one
    found."""
    grounding = [make_sample(i, box, [0.9], [0], gt_bboxes=GT, phrase_ids=[0], phrases=['a dog'])
                 for i, box in enumerate([HIT, MISS, MISS, HIT])]
    detection = make_sample(7, HIT, [0.5], [0], gt_bboxes=GT)
    return [grounding[0], detection, grounding[1], grounding[2], grounding[3]]


def _evaluate(rank, world_size, samples):
    evaluator = MultiDatasetsAverageEvaluator(
        metrics=[dict(type='Flickr30kRecallMetric', topk=(1, )), dict(type='Flickr30kRecallMetric', topk=(1, ))],
        dataset_prefixes=['a', 'b'], average_keys=('Recall@1_all', ))
    evaluator.dataset_meta = dict(cumulative_sizes=[2, 5])
    for index in DefaultSampler(list(range(len(samples))), shuffle=False):  # rank 1 gets sample 0 again
        evaluator.process([samples[index]])
    return evaluator.evaluate(len(samples))


def test_placeholders_survive_the_merge_of_two_ranks(make_sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MMEngine's collect_results_cpu writes the ranks' parts under ./.dist_test
    samples = _samples(make_sample)
    expected = {'a/flickr30k/Recall@1_all': 1.0, 'b/flickr30k/Recall@1_all': pytest.approx(1 / 3),
                'average/Recall@1_all': pytest.approx(2 / 3)}
    assert _evaluate(0, 1, samples) == expected  # one process
    assert run_on_ranks(_evaluate, 2, (samples, ), timeout=60) == [expected, expected]
