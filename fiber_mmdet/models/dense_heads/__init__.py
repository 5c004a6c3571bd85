from .fiber_head import FIBERHead

__all__ = ['FIBERHead']
