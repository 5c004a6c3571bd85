"""CurriculumSampler: each stage draws from its datasets only, for exactly its iterations, on every rank."""
import itertools

import pytest
import torch
from mmengine.dataset import BaseDataset, ConcatDataset, InfiniteSampler
from mmengine.registry import init_default_scope

from fiber_mmdet.datasets import CurriculumSampler
from mmdet.registry import DATA_SAMPLERS


class _Range(BaseDataset):
    """A dataset of ``n`` samples, each of them ``dict(tag=tag)``."""

    def __init__(self, n: int, tag: int) -> None:
        self.n, self.tag = n, tag
        super().__init__(serialize_data=False)

    def load_data_list(self):
        return [dict(tag=self.tag) for _ in range(self.n)]


def _concat(*sizes):
    return ConcatDataset([_Range(n, tag) for tag, n in enumerate(sizes)])


def _dataset_of(concat, indices):
    return [concat[i]['tag'] for i in indices]


def test_stages_draw_from_their_datasets_for_their_iterations():
    concat = _concat(10, 7, 3)  # indices 0-9, 10-16, 17-19
    sampler = CurriculumSampler(concat, batch_size=4, stages=[dict(datasets=[2], iters=5), dict(datasets=[0, 1], iters=3)],
                                seed=0)
    stream = list(itertools.islice(iter(sampler), 4 * 5 + 4 * 3 + 400))
    first, second, rest = stream[:20], stream[20:32], stream[32:]
    assert set(_dataset_of(concat, first)) == {2}
    assert sorted(first[:3]) == [17, 18, 19]  # a pool is used up before it is drawn again
    assert set(_dataset_of(concat, second)) == {0, 1}
    assert set(_dataset_of(concat, rest)) == {0, 1, 2}  # then InfiniteSampler's draws over everything
    assert sorted(rest[:20]) == list(range(20))
    # same seed, same stream
    again = CurriculumSampler(concat, batch_size=4, stages=[dict(datasets=[2], iters=5), dict(datasets=[0, 1], iters=3)],
                              seed=0)
    assert list(itertools.islice(iter(again), len(stream))) == stream


def test_a_last_stage_without_iters_lasts_for_the_rest_of_the_run():
    concat = _concat(10, 7, 3)
    sampler = CurriculumSampler(concat, batch_size=2, stages=[dict(datasets=[2], iters=2), dict(datasets=[0, 1])],
                                seed=1)
    stream = list(itertools.islice(iter(sampler), 4 + 1000))
    assert set(_dataset_of(concat, stream[:4])) == {2}
    assert set(_dataset_of(concat, stream[4:])) == {0, 1}


def test_ranks_split_one_stream_and_share_the_stage_boundary():
    concat = _concat(10, 7, 3)
    stages = [dict(datasets=[2], iters=3), dict(datasets=[0])]
    samplers = []
    for rank in range(2):
        sampler = CurriculumSampler(concat, batch_size=2, stages=stages, seed=0)
        sampler.rank, sampler.world_size = rank, 2
        sampler.indices = sampler._indices_of_rank()
        samplers.append(sampler)
    per_rank = [list(itertools.islice(iter(s), 6 + 40)) for s in samplers]
    for indices in per_rank:  # 3 iterations of 2 images on each rank, then dataset 0
        assert set(_dataset_of(concat, indices[:6])) == {2}
        assert set(_dataset_of(concat, indices[6:])) == {0}
    assert per_rank[0] != per_rank[1]


def test_without_stages_it_is_infinite_sampler():
    concat = _concat(10, 7, 3)
    ours = list(itertools.islice(iter(CurriculumSampler(concat, batch_size=4, stages=[], seed=3)), 100))
    theirs = list(itertools.islice(iter(InfiniteSampler(concat, seed=3)), 100))
    assert ours == theirs


def test_built_from_a_config_by_name():
    init_default_scope('mmdet')
    sampler = DATA_SAMPLERS.build(dict(type='CurriculumSampler', dataset=_concat(5, 5), batch_size=1,
                                       stages=[dict(datasets=[1], iters=5)], seed=0))
    assert sorted(itertools.islice(iter(sampler), 5)) == [5, 6, 7, 8, 9]


@pytest.mark.parametrize('dataset, kwargs, message', [
    (_Range(5, 0), dict(batch_size=1, stages=[]), 'needs a ConcatDataset'),
    (_concat(5, 5), dict(batch_size=0, stages=[]), 'batch_size must be a positive int'),
    (_concat(5, 5), dict(batch_size=1, stages=[dict(datasets=[2], iters=3)]), 'stage 0: datasets [2] must be'),
    (_concat(5, 5), dict(batch_size=1, stages=[dict(datasets=[0]), dict(datasets=[1])]), 'stage 0: iters must be'),
    (_concat(5, 0), dict(batch_size=1, stages=[dict(datasets=[1], iters=2)]), 'stage 0: datasets [1] are empty'),
])
def test_bad_settings_name_what_is_wrong(dataset, kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message.replace('[', r'\[').replace(']', r'\]')):
        CurriculumSampler(dataset, seed=0, **kwargs)
