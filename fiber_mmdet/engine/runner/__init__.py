from .contain_bad_samples_loop import (BadSampleError, ContainBadSamplesTestLoop, ContainBadSamplesValLoop,
                                       describe_sample)

__all__ = ['BadSampleError', 'ContainBadSamplesTestLoop', 'ContainBadSamplesValLoop', 'describe_sample']
