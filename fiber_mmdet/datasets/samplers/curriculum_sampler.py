"""An infinite sampler over a concatenation of datasets whose first iterations draw from some of them only."""
from typing import Iterator, List, Optional, Sequence

import torch
from mmengine.dataset import InfiniteSampler
from mmengine.logging import print_log

from mmdet.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class CurriculumSampler(InfiniteSampler):
    """mmengine's ``InfiniteSampler`` with a curriculum: each stage draws, for its number of iterations, only
    from the listed datasets of a ``ConcatDataset``. A last stage without ``iters`` lasts for the rest of the
    run; otherwise every dataset is drawn from after the last stage, as ``InfiniteSampler`` does.

    The toy FIBER needs it: trained on the whole mix from the start, its box features never learn the colour
    (the shared tower follows the box losses and the words collapse onto the shapes); 200 iterations of boxes
    named by colour and shape, before the mix, give it the colour (``configs/toy/fiber_toy_attribute_first.py``;
    docs/toy.md, section "Findings").

    The stream is one seeded sequence cut between ranks as ``InfiniteSampler`` cuts it, so a stage lasts its
    number of iterations on every rank. MMEngine's ``IterBasedTrainLoop`` replays the stream on resume, so a
    resumed run continues in the stage it stopped in.

    Args:
        dataset (ConcatDataset): the training datasets (mmengine's / mmdet's ``ConcatDataset``).
        batch_size (int): images per iteration and GPU (``train_dataloader.batch_size``).
        stages (list[dict]): ``dict(datasets=[i, ...], iters=N)``: for N iterations, shuffled draws from the
            datasets at these positions of ``dataset.datasets`` only, each stage's pool reshuffled whenever it
            is used up; the last stage may leave out ``iters``.
        shuffle (bool): shuffle (the curriculum stages always do). Default True.
        seed (int, optional): as for ``InfiniteSampler``.
    """

    def __init__(self, dataset, batch_size: int, stages: Sequence[dict], shuffle: bool = True,
                 seed: Optional[int] = None) -> None:
        ranges = getattr(dataset, 'cumulative_sizes', None)
        if ranges is None:
            raise TypeError(f'CurriculumSampler needs a ConcatDataset (train_dataloader.dataset), got '
                            f'{type(dataset).__name__}')
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'CurriculumSampler: batch_size must be a positive int, got {batch_size!r}')
        starts = [0] + list(ranges[:-1])
        self.stage_pools: List[torch.Tensor] = []
        self.stage_iters: List[int] = []
        for number, stage in enumerate(stages):
            chosen, iters = stage.get('datasets'), stage.get('iters')
            if iters is None and number == len(stages) - 1:
                iters = -1  # the rest of the run
            elif not isinstance(iters, int) or iters < 1:
                raise ValueError(f'CurriculumSampler stage {number}: iters must be a positive int, got {iters!r}')
            if not chosen or any(not 0 <= i < len(ranges) for i in chosen):
                raise ValueError(f'CurriculumSampler stage {number}: datasets {chosen!r} must be positions in the '
                                 f'{len(ranges)} datasets of the ConcatDataset')
            pool = torch.cat([torch.arange(starts[i], ranges[i]) for i in chosen])
            if pool.numel() == 0:
                raise ValueError(f'CurriculumSampler stage {number}: datasets {chosen!r} are empty')
            self.stage_pools.append(pool)
            self.stage_iters.append(iters)
        self.batch_size = batch_size
        super().__init__(dataset, shuffle=shuffle, seed=seed)
        begin = 0
        for stage, pool, iters in zip(stages, self.stage_pools, self.stage_iters):
            span = f'{begin}-{begin + iters - 1}' if iters > 0 else f'{begin} on'
            print_log(f'curriculum: iterations {span} draw from datasets {list(stage["datasets"])} '
                      f'({pool.numel()} samples)', logger='current')
            begin += iters
        if self.stage_iters and self.stage_iters[-1] > 0:
            print_log(f'curriculum: from iteration {begin} on, all {len(ranges)} datasets ({self.size} samples)',
                      logger='current')

    def _infinite_indices(self) -> Iterator[int]:
        """The global stream: each stage's share (iters x batch_size x world_size draws), then InfiniteSampler's
        own stream over all datasets."""
        g = torch.Generator()
        g.manual_seed(self.seed)
        for pool, iters in zip(self.stage_pools, self.stage_iters):
            if iters < 0:  # the last stage, for the rest of the run
                while True:
                    yield from pool[torch.randperm(pool.numel(), generator=g)].tolist()
            needed = iters * self.batch_size * self.world_size
            repeats = -(-needed // pool.numel())
            draws = torch.cat([pool[torch.randperm(pool.numel(), generator=g)] for _ in range(repeats)])
            yield from draws[:needed].tolist()
        yield from super()._infinite_indices()
