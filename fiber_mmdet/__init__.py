"""FIBER for MMDetection 3.x.

Importing this package registers every FIBER component in MMDetection's registries, so a config only needs
``custom_imports = dict(imports=['fiber_mmdet'], allow_failed_imports=False)``. It also allow-lists the
globals of MMEngine Runner checkpoints for torch's weights-only loading (see :mod:`fiber_mmdet.engine.checkpoint`),
so our checkpoints load through any entry point (mmdet's ``tools/test.py``, ``init_detector``, ``DetInferencer``).
"""
from .version import __version__
from . import datasets, engine, evaluation, models, visualization  # noqa: F401  (registration side effects)

engine.register_checkpoint_safe_globals()

__all__ = ['__version__']
