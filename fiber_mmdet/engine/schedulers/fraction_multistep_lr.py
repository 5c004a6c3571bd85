"""FIBER's LR steps at fixed fractions of the training length (x0.1 at 67 % and 89 %)."""
from typing import Sequence

from mmengine.optim.scheduler import MultiStepLR

from mmdet.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class FractionMultiStepLR(MultiStepLR):
    """:class:`mmengine.optim.MultiStepLR` whose milestones are fractions of the schedule ``[begin, end)``.

    The original steps at ``round(0.67 * MAX_ITER)`` and ``round(0.89 * MAX_ITER)`` iterations, with
    ``MAX_ITER = epochs * iterations per epoch`` for epoch-based recipes (24 epochs: 16.08 and 21.36 epochs),
    which epoch-valued ``MultiStepLR`` milestones cannot express. Give ``end`` (epochs with
    ``by_epoch=True, convert_to_iter_based=True``, or iterations with ``by_epoch=False``) and ``fractions``;
    the milestones become ``begin + round(f * (end - begin))`` iterations.

    Args:
        fractions (Sequence[float]): increasing, in (0, 1).
        **kwargs: :class:`~mmengine.optim.MultiStepLR` arguments except ``milestones``; ``end`` is required.
    """

    def __init__(self, optimizer, fractions: Sequence[float] = (), milestones: Sequence[int] = (),
                 **kwargs) -> None:
        if not milestones:
            fractions = [float(f) for f in fractions]
            if not fractions or any(not 0 < f < 1 for f in fractions) or sorted(fractions) != fractions:
                raise ValueError(f'fractions must be increasing values in (0, 1), got {fractions}')
            if kwargs.get('end') is None or kwargs['end'] == float('inf') or kwargs['end'] > 1e12:
                raise ValueError('FractionMultiStepLR needs `end` (the length of the schedule)')
            begin, end = kwargs.get('begin', 0), kwargs['end']
            milestones = [begin + int(round(f * (end - begin))) for f in fractions]
        super().__init__(optimizer, milestones=list(milestones), **kwargs)

    @classmethod
    def build_iter_from_epoch(cls, *args, fractions: Sequence[float], begin=0, end=None, by_epoch=True,
                              epoch_length=None, **kwargs):
        """Iteration-based instance: the milestones are rounded from iterations, not from epochs."""
        if not by_epoch or not epoch_length or end is None:
            raise ValueError('FractionMultiStepLR: convert_to_iter_based needs by_epoch=True and an `end` epoch')
        begin_it, end_it = int(begin * epoch_length), int(end * epoch_length)
        milestones = [begin_it + int(round(f * (end_it - begin_it))) for f in fractions]
        return cls(*args, milestones=milestones, begin=begin_it, end=end_it, by_epoch=False, **kwargs)
