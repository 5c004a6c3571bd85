from .fiber_optim_wrapper_constructor import FIBEROptimWrapperConstructor
from .non_finite_skip_optim_wrapper import (NonFiniteSkipAmpOptimWrapper, NonFiniteSkipOptimWrapper,
                                            NonFiniteStepGuard, non_finite_indices, step_guards)

__all__ = [
    'FIBEROptimWrapperConstructor', 'NonFiniteSkipAmpOptimWrapper', 'NonFiniteSkipOptimWrapper',
    'NonFiniteStepGuard', 'non_finite_indices', 'step_guards'
]
