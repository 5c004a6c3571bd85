from .contain_bad_samples_loop import (BadSampleError, ContainBadSamplesTestLoop, ContainBadSamplesValLoop,
                                       describe_sample)
from .resumable_epoch_loop import ResumableEpochBasedTrainLoop

__all__ = [
    'BadSampleError', 'ContainBadSamplesTestLoop', 'ContainBadSamplesValLoop', 'ResumableEpochBasedTrainLoop',
    'describe_sample'
]
