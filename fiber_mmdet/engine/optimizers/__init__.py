from .fiber_optim_wrapper_constructor import FIBEROptimWrapperConstructor

__all__ = ['FIBEROptimWrapperConstructor']
