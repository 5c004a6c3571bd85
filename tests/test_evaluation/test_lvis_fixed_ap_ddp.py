"""LVISFixedAPRank0Metric under two gloo ranks with an uneven split: MMEngine's DefaultSampler repeats the first
image on the second rank to pad the last round; its detections must be evaluated once, so that AP and the dumped
detections equal the single-process ones (fixtures/eval/lvis_fixed_ap, 11 of its 12 images)."""
import json

import pytest
from mmengine.dataset import DefaultSampler

from fiber_mmdet.evaluation import LVISFixedAPRank0Metric
from ..test_engine.dist_helpers import run_on_ranks
from .test_lvis_fixed_ap_metric import _samples

CAPS = (10000, 20)  # the protocol's cap, and one that the split's detections exceed (the per-rank cap is used)


def _evaluate(samples, ann_file, out_dir, name, order, dumps=True):
    """Each cap's metrics, and the detections it kept (read back from its dump, written by rank 0)."""
    results = {}
    for topk in CAPS:
        prefix = f'{out_dir}/{name}_{topk}'
        metric = LVISFixedAPRank0Metric(ann_file=ann_file, topk=topk, outfile_prefix=prefix)
        for index in order:
            metric.process({}, [samples[index]])
        metrics = metric.evaluate(len(samples))
        kept = None
        if dumps:
            with open(f'{prefix}.bbox.json') as f:
                kept = json.load(f)
        results[topk] = (metrics, kept)
    return results


def _rank(rank, world_size, samples, ann_file, out_dir):
    order = list(DefaultSampler(list(range(len(samples))), shuffle=False))  # this rank's share, padded
    return order, _evaluate(samples, ann_file, out_dir, 'ddp', order, dumps=rank == 0)


def test_padded_duplicate_is_evaluated_once_under_two_ranks(eval_fixtures, make_sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MMEngine's collect_results_cpu writes the ranks' parts under ./.dist_test
    fixture_dir = eval_fixtures / 'lvis_fixed_ap'
    ann_file = str(fixture_dir / 'lvis_v1_minival_fixture.json')
    samples = _samples(fixture_dir, make_sample)[:11]  # 11 images over 2 ranks: 6 each, the 12th is image 0 again
    single = _evaluate(samples, ann_file, str(tmp_path), 'single', range(len(samples)))

    (order0, distributed), (order1, on_rank1) = run_on_ranks(_rank, 2, (samples, ann_file, str(tmp_path)), timeout=90)
    assert order0 == [0, 2, 4, 6, 8, 10] and order1 == [1, 3, 5, 7, 9, 0]  # image 0 is predicted on both ranks
    for topk in CAPS:
        metrics, kept = distributed[topk]
        single_metrics, single_kept = single[topk]
        # each detection once: without the deduplication image 0's 17 detections would be there twice
        assert sorted(map(json.dumps, kept)) == sorted(map(json.dumps, single_kept)), topk
        assert metrics == pytest.approx(single_metrics, abs=1e-12), topk
        assert on_rank1[topk][0] == metrics  # broadcast to every rank
    assert len(distributed[10000][1]) == sum(len(s['pred_instances']['scores']) for s in samples)
