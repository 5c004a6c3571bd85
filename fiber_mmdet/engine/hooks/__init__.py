from .weight_decay_schedule_hook import WeightDecayScheduleHook

__all__ = ['WeightDecayScheduleHook']
