from .best_on_tie_checkpoint_hook import BestOnTieCheckpointHook
from .rank_zero_logger_hook import RankZeroLoggerHook
from .weight_decay_schedule_hook import WeightDecayScheduleHook

__all__ = ['BestOnTieCheckpointHook', 'RankZeroLoggerHook', 'WeightDecayScheduleHook']
