from .per_sample_visualization_hook import PerSampleVisualizationHook
from .rank_zero_logger_hook import RankZeroLoggerHook
from .weight_decay_schedule_hook import WeightDecayScheduleHook

__all__ = ['PerSampleVisualizationHook', 'RankZeroLoggerHook', 'WeightDecayScheduleHook']
