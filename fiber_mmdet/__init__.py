"""FIBER for MMDetection 3.x.

Importing this package registers every FIBER component in MMDetection's registries, so a config only needs
``custom_imports = dict(imports=['fiber_mmdet'], allow_failed_imports=False)``. It also allow-lists the
globals of MMEngine Runner checkpoints for torch's weights-only loading (see :mod:`fiber_mmdet.engine.checkpoint`),
so our checkpoints load through any entry point (mmdet's ``tools/test.py``, ``init_detector``, ``DetInferencer``).

It also lets MMEngine load the configs an installed package carries (``fiber_mmdet/.mim/configs``, see setup.py)
by package path: ``_base_ = 'fiber_mmdet::toy/fiber_toy.py'`` in a config, or
``mmengine.hub.get_config('fiber_mmdet::toy/fiber_toy.py')``, once ``fiber_mmdet`` is imported.

Without torch installed (a deployment machine with only ``pip install fiber_mmdet[deploy]``) there is nothing
to register: the package then offers only :mod:`fiber_mmdet.runtime`, which runs exported ONNX graphs.
"""
from .version import __version__

try:
    import torch  # noqa: F401
    HAS_TORCH = True
except ModuleNotFoundError as e:  # only a missing torch; a broken one still raises
    if e.name != 'torch':
        raise
    HAS_TORCH = False

if HAS_TORCH:
    from . import datasets, engine, evaluation, models, visualization  # noqa: F401  (registration side effects)
    from . import registry  # noqa: F401  (the ``fiber_mmdet`` scope of configs inherited by package path)

    engine.register_checkpoint_safe_globals()


def _register_config_package() -> None:
    """MMEngine 0.10 resolves ``PACKAGE::PATH`` only for packages in ``mmengine.config.utils.MODULE2PACKAGE`` (it
    asserts so before looking in ``PACKAGE/.mim/configs``); this adds ``fiber_mmdet``. The config parser reads
    ``_base_`` before it imports a config's ``custom_imports``, hence this happens on import."""
    from mmengine.config.utils import MODULE2PACKAGE
    MODULE2PACKAGE.setdefault('fiber_mmdet', 'fiber_mmdet')


if HAS_TORCH:
    _register_config_package()

__all__ = ['__version__']
