from .best_on_tie_checkpoint_hook import BestOnTieCheckpointHook
from .non_finite_guard_hook import NonFiniteGuardHook, NonFiniteTrainingError, non_finite_tensors
from .non_finite_skip_ema_hook import NonFiniteSkipEMAHook
from .per_sample_visualization_hook import PerSampleVisualizationHook
from .rank_zero_logger_hook import RankZeroLoggerHook
from .weight_decay_schedule_hook import WeightDecayScheduleHook

__all__ = [
    'BestOnTieCheckpointHook', 'NonFiniteGuardHook', 'NonFiniteSkipEMAHook', 'NonFiniteTrainingError',
    'PerSampleVisualizationHook', 'RankZeroLoggerHook', 'WeightDecayScheduleHook', 'non_finite_tensors'
]
