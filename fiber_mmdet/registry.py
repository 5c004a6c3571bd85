"""Registry nodes of the ``fiber_mmdet`` scope: children of MMDetection's, with nothing registered of their own.

fiber_mmdet registers its modules in MMDetection's registries, and its configs run with ``default_scope='mmdet'``.
A config that inherits one of ours through MMEngine's package syntax (``_base_ = 'fiber_mmdet::toy/fiber_toy.py'``)
gets ``_scope_='fiber_mmdet'`` on every typed dict of that base: MMEngine scopes a base by the package it came from.
Building such a dict imports ``fiber_mmdet.registry`` and searches the registry tree for the scope ``fiber_mmdet``;
without these nodes MMEngine would fall back to its root registry, where FIBER's modules (and mmdet's) are unknown.
Each node finds a name in MMDetection's registry, its parent, so mmdet's modules and ours both resolve.
"""
from mmengine.registry import Registry

from mmdet import registry as mmdet_registry

SCOPE = 'fiber_mmdet'


def _child_of(parent: Registry) -> Registry:
    # A node imports only its own locations before a look-up, and the search through its parents reads their tables
    # as they are: so it imports fiber_mmdet (which registers in the parent) and the parent's locations as well.
    locations = ['fiber_mmdet'] + list(getattr(parent, '_locations', []))
    return Registry(parent.name, parent=parent, scope=SCOPE, locations=locations)


RUNNERS = _child_of(mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child_of(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child_of(mmdet_registry.LOOPS)
HOOKS = _child_of(mmdet_registry.HOOKS)
DATASETS = _child_of(mmdet_registry.DATASETS)
DATA_SAMPLERS = _child_of(mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child_of(mmdet_registry.TRANSFORMS)
MODELS = _child_of(mmdet_registry.MODELS)
MODEL_WRAPPERS = _child_of(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child_of(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child_of(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child_of(mmdet_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child_of(mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child_of(mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child_of(mmdet_registry.METRICS)
EVALUATOR = _child_of(mmdet_registry.EVALUATOR)
TASK_UTILS = _child_of(mmdet_registry.TASK_UTILS)
VISUALIZERS = _child_of(mmdet_registry.VISUALIZERS)
VISBACKENDS = _child_of(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child_of(mmdet_registry.LOG_PROCESSORS)
