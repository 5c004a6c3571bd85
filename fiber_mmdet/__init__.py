"""FIBER for MMDetection 3.x.

Importing this package registers every FIBER component in MMDetection's registries, so a config only needs
``custom_imports = dict(imports=['fiber_mmdet'], allow_failed_imports=False)``.
"""
from .version import __version__
from . import datasets, engine, evaluation, models, visualization  # noqa: F401  (registration side effects)

__all__ = ['__version__']
