"""Training-loop pieces of FIBER's recipe that MMEngine does not provide, plus runtime fixes for the tools.

* :class:`FIBEROptimWrapperConstructor` -- FIBER's parameter groups (2x lr and no weight decay for every
  parameter whose name contains ``bias``, a separate learning rate for the language model).
* :class:`WeightDecayScheduleHook` -- FIBER's weight-decay drops ahead of the LR milestones.
* :class:`NonFiniteSkipOptimWrapper` / :class:`NonFiniteSkipAmpOptimWrapper`, :class:`NonFiniteGuardHook`,
  :class:`NonFiniteSkipEMAHook` -- a step with a NaN/inf loss or gradients is skipped, logged and counted, a run
  of them stops training, and no checkpoint with non-finite weights is written.
* :class:`FractionMultiStepLR` -- LR steps at fractions of the schedule (67 % / 89 %).
* :class:`BestOnTieCheckpointHook` -- ``save_best`` that also saves on a tie, as the original's ``model_best``.
* :class:`AtomicCheckpointHook` -- checkpoints written atomically, the previous one removed only after the new
  one is on disk; :func:`find_resumable_checkpoint` -- ``--resume`` skips checkpoints that do not load.
* :class:`PreemptionHook` -- SIGTERM / SIGUSR1 stop training after the iteration with a checkpoint, exit status
  :data:`PREEMPTED_EXIT_CODE`; :class:`ResumableEarlyStoppingHook`, :class:`ResumableEpochBasedTrainLoop` --
  early stopping and epoch-based runs resume where they stopped.
* :func:`register_checkpoint_safe_globals` -- lets MMEngine 0.10.7 load Runner checkpoints on torch >= 2.6
  (called by ``import fiber_mmdet``).
* :class:`ContainBadSamplesTestLoop` / :class:`ContainBadSamplesValLoop` -- an unreadable image or a prompt
  that cannot be built is named, and stops the evaluation (strict) or is counted and skipped.
* :func:`setup_cpu_distributed` -- ``--launcher pytorch`` on machines without CUDA (gloo).
"""
from .checkpoint import find_resumable_checkpoint, register_checkpoint_safe_globals
from .dist import setup_cpu_distributed
from .hooks import (PREEMPTED_EXIT_CODE, AtomicCheckpointHook, BestOnTieCheckpointHook, NonFiniteGuardHook,
                    NonFiniteSkipEMAHook, NonFiniteTrainingError, PerSampleVisualizationHook, PreemptionHook,
                    RankZeroLoggerHook, ResumableEarlyStoppingHook, TrainingPreempted, WeightDecayScheduleHook)
from .optimizers import FIBEROptimWrapperConstructor, NonFiniteSkipAmpOptimWrapper, NonFiniteSkipOptimWrapper
from .runner import BadSampleError, ContainBadSamplesTestLoop, ContainBadSamplesValLoop, ResumableEpochBasedTrainLoop
from .schedulers import FractionMultiStepLR

__all__ = [
    'PREEMPTED_EXIT_CODE', 'AtomicCheckpointHook', 'PreemptionHook', 'ResumableEarlyStoppingHook',
    'ResumableEpochBasedTrainLoop', 'TrainingPreempted', 'find_resumable_checkpoint',
    'BadSampleError', 'BestOnTieCheckpointHook', 'ContainBadSamplesTestLoop', 'ContainBadSamplesValLoop',
    'FIBEROptimWrapperConstructor', 'FractionMultiStepLR', 'NonFiniteGuardHook', 'NonFiniteSkipAmpOptimWrapper',
    'NonFiniteSkipEMAHook', 'NonFiniteSkipOptimWrapper', 'NonFiniteTrainingError', 'PerSampleVisualizationHook',
    'RankZeroLoggerHook', 'WeightDecayScheduleHook', 'register_checkpoint_safe_globals', 'setup_cpu_distributed'
]
