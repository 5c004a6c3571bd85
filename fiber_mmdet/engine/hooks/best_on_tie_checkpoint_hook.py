"""MMEngine's CheckpointHook with the original's "best" rule: a tie with the best score also saves."""
from math import inf

from mmengine.hooks import CheckpointHook

from mmdet.registry import HOOKS


@HOOKS.register_module()
class BestOnTieCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` with one more ``rule``, ``'greater_equal'``.

    FIBER's trainer saves ``model_best`` whenever the validation AP is **>=** the best so far (``trainer.py``,
    ODinW fine-tuning), so among equal scores the later model is kept; MMEngine's ``'greater'`` keeps the first.
    On few-shot ODinW splits ties are common (small validation sets, AP rounded by pycocotools' bins). Use
    ``save_best='coco/bbox_mAP', rule='greater_equal'``.
    """

    rule_map = dict(CheckpointHook.rule_map, greater_equal=lambda x, y: x >= y)
    init_value_map = dict(CheckpointHook.init_value_map, greater_equal=-inf)
