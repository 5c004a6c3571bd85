from .atomic_checkpoint_hook import AtomicCheckpointHook
from .best_on_tie_checkpoint_hook import BestOnTieCheckpointHook
from .non_finite_guard_hook import NonFiniteGuardHook, NonFiniteTrainingError, non_finite_tensors
from .non_finite_skip_ema_hook import NonFiniteSkipEMAHook
from .per_sample_visualization_hook import PerSampleVisualizationHook
from .preemption_hook import PREEMPTED_EXIT_CODE, PreemptionHook, TrainingPreempted
from .rank_zero_logger_hook import RankZeroLoggerHook
from .resumable_early_stopping_hook import ResumableEarlyStoppingHook
from .weight_decay_schedule_hook import WeightDecayScheduleHook

__all__ = [
    'PREEMPTED_EXIT_CODE', 'AtomicCheckpointHook', 'BestOnTieCheckpointHook', 'NonFiniteGuardHook',
    'NonFiniteSkipEMAHook', 'NonFiniteTrainingError', 'PerSampleVisualizationHook', 'PreemptionHook',
    'RankZeroLoggerHook', 'ResumableEarlyStoppingHook', 'TrainingPreempted', 'WeightDecayScheduleHook',
    'non_finite_tensors'
]
