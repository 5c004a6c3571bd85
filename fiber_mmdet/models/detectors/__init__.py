from .fiber import FIBER

__all__ = ['FIBER']
