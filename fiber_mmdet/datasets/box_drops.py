"""Why a dataset leaves a box out, and the log line that counts them (nothing is dropped without a count)."""
from collections import Counter
from typing import Mapping, Optional, Sequence

from mmengine.logging import MMLogger


def box_drop_reason(box: Sequence[float], width: float, height: float) -> Optional[str]:
    """The reason mmdet's readers (``ODVGDataset``, ``CocoDataset``) leave out an xyxy box in pixels, or None.

    Reasons: ``'negative size'``, ``'zero area'``, ``'outside the image'`` (no overlap with it), ``'smaller than
    1 px'`` (a side under one pixel), tested in that order.
    """
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        return 'negative size'
    if x2 == x1 or y2 == y1:
        return 'zero area'
    if max(0, min(x2, width) - max(x1, 0)) * max(0, min(y2, height) - max(y1, 0)) == 0:
        return 'outside the image'
    if x2 - x1 < 1 or y2 - y1 < 1:
        return 'smaller than 1 px'
    return None


def xywh_reaches_outside(box: Sequence[float], width: float, height: float, tolerance: float = 0.0) -> bool:
    """Whether an xywh box in pixels passes its image's border by more than ``tolerance`` pixels."""
    x, y, w, h = box
    return x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance


def log_box_drops(dataset: str, drops: Mapping[str, int]) -> dict:
    """Warn with the number of boxes left out, per reason; returns the non-zero counts, sorted by reason."""
    drops = {reason: n for reason, n in sorted(Counter(drops).items()) if n}
    if drops:
        MMLogger.get_current_instance().warning(
            f'{dataset}: left out {sum(drops.values())} boxes: ' + ', '.join(f'{r} {n}' for r, n in drops.items()))
    return drops
