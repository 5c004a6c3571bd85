"""FIBER's weight-decay schedule (reference: ``MB/engine/trainer.py``, ``SOLVER.WEIGHT_DECAY_SCHEDULE``)."""
from typing import Iterator, List, Optional, Sequence, Union

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper, OptimWrapperDict

from mmdet.registry import HOOKS

DATA_BATCH = Optional[Union[dict, tuple, list]]


@HOOKS.register_module()
class WeightDecayScheduleHook(Hook):
    """Multiply the weight decay of every param group by ``gamma`` ahead of each LR milestone.

    The weight decay used at iteration ``i`` (0-based, ``runner.iter`` before the step) is
    ``initial_weight_decay * gamma ** k`` where ``k`` counts the switch points ``fraction * milestone`` that are
    ``<= i`` -- FIBER's ``iteration >= WEIGHT_DECAY_SCHEDULE_RATIO * milestone`` test, so the decay drops at
    66.7 % of each LR milestone, before the LR itself drops. The value is recomputed from ``runner.iter`` before
    every iteration rather than multiplied in place, so a resumed run (whose optimizer state already holds the
    reduced decay) gets the same values as an uninterrupted one. Each group's starting value is kept in the
    group as ``initial_weight_decay`` (saved and restored with the optimizer state, like MMEngine's
    ``initial_lr``).

    Args:
        milestones (Sequence[int]): The LR milestones, in iterations (FIBER pre-training: ``[536000, 712000]``).
        gamma (float): Factor applied at each switch point. Defaults to 0.1.
        fraction (float): Switch point as a fraction of each milestone. Defaults to 0.667.

    Example:
        >>> custom_hooks = [dict(type='WeightDecayScheduleHook', milestones=[536000, 712000])]
    """

    priority = 'NORMAL'

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1, fraction: float = 0.667) -> None:
        milestones = list(milestones)
        if not milestones or any(m <= 0 for m in milestones) or milestones != sorted(milestones):
            raise ValueError(f'milestones must be increasing positive iterations, got {milestones}')
        if not 0 < fraction <= 1:
            raise ValueError(f'fraction must be in (0, 1], got {fraction}')
        self.milestones = milestones
        self.gamma = gamma
        self.fraction = fraction
        self.switch_points: List[float] = [fraction * m for m in milestones]
        self._last_num_drops: Optional[int] = None

    def num_drops(self, iteration: int) -> int:
        """How many switch points iteration ``iteration`` has reached."""
        return sum(iteration >= point for point in self.switch_points)

    def weight_decay_at(self, initial_weight_decay: float, iteration: int) -> float:
        """The weight decay of a group that started at ``initial_weight_decay``, at iteration ``iteration``."""
        weight_decay = initial_weight_decay
        for _ in range(self.num_drops(iteration)):
            weight_decay *= self.gamma  # repeated in-place product, as the reference does it
        return weight_decay

    def before_train(self, runner) -> None:
        for group in _param_groups(runner.optim_wrapper):
            group.setdefault('initial_weight_decay', group.get('weight_decay', 0.0))

    def before_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        iteration = runner.iter
        num_drops = self.num_drops(iteration)
        for group in _param_groups(runner.optim_wrapper):
            if 'weight_decay' in group:
                group['weight_decay'] = self.weight_decay_at(group['initial_weight_decay'], iteration)
        if num_drops != self._last_num_drops:
            if self._last_num_drops is not None or num_drops > 0:
                print_log(f'WeightDecayScheduleHook: iteration {iteration}, weight decay x{self.gamma}^{num_drops}',
                          logger='current')
            self._last_num_drops = num_drops


def _param_groups(optim_wrapper: Union[OptimWrapper, OptimWrapperDict]) -> Iterator[dict]:
    wrappers = optim_wrapper.values() if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper]
    for wrapper in wrappers:
        yield from wrapper.optimizer.param_groups
