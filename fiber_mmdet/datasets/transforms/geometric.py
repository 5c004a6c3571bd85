"""Resize and box clipping exactly as FIBER's reference pipeline.

Horizontal flip needs no new code: mmdet's ``RandomFlip_GLIP`` already flips xyxy boxes with the reference's "+1"
convention (``x1' = W - x2 - 1``, ``x2' = W - x1 - 1``) and leaves the caption alone (tested in
``tests/test_datasets/test_geometric.py``).
"""
import random
from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import MMLogger

from mmdet.datasets.transforms import Resize
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes, autocast_box_type
from ...utils.resize_rule import fiber_resize_shape  # noqa: F401  (exported with the transforms)
from .od_to_grounding import filter_instances


@TRANSFORMS.register_module()
class ShortSideResize(Resize):
    """FIBER's resize: random short side from ``short_sides``, long side capped, PIL bilinear.

    mmdet's keep-ratio resizes scale both sides by one factor ``min(1333 / long, 800 / short)``: ``Resize`` /
    ``RandomChoiceResize`` then round (``int(x + 0.5)``: 480x640 -> 800x1067, reference 800x1066) and
    ``FixScaleResize`` truncates (capped images get a 1333 long side where the reference rounds the short side
    first: 100x177 -> 753x1333, reference 753x1332; and floating point turns 800 into 799 for some short sides:
    205x199 -> 824x799); on 17,673 sizes (h 100-1000, w 100-1600) ``FixScaleResize`` disagreed with the reference
    on 62 %, mostly capped ones. This transform computes the size with :func:`fiber_resize_shape` and resizes to it
    without keeping a ratio, so ``scale_factor`` is ``(new_w / w, new_h / h)`` per axis, as the reference scales
    boxes. The short side is drawn with Python's
    ``random.choice`` per image (train: ``(480, 560, 640, 720, 800)``; test: ``(800,)``).

    Required Keys: img; gt_bboxes, gt_masks, gt_seg_map (optional)

    Modified Keys: img, img_shape, gt_bboxes, gt_masks, gt_seg_map

    Added Keys: scale, scale_factor, keep_ratio (False), homography_matrix

    Args:
        short_sides (Sequence[int] | int): candidate short sides. Defaults to (800,).
        max_long_side (int): cap of the long side (the reference's MAX_SIZE). Defaults to 1333.
        clip_object_border (bool): clip boxes to the new image. The reference does not clip after resizing
            (boxes were clipped to ``W-1``/``H-1`` before). Defaults to False.
        backend (str): ``'pillow'`` (the reference resizes PIL images). Defaults to ``'pillow'``.
        interpolation (str): Defaults to ``'bilinear'``.
    """

    def __init__(self,
                 short_sides: Sequence[int] = (800, ),
                 max_long_side: int = 1333,
                 clip_object_border: bool = False,
                 backend: str = 'pillow',
                 interpolation: str = 'bilinear') -> None:
        if isinstance(short_sides, int):
            short_sides = (short_sides, )
        self.short_sides = tuple(int(s) for s in short_sides)
        if not self.short_sides or min(self.short_sides) <= 0:
            raise ValueError(f'short_sides must be positive integers, got {short_sides}')
        self.max_long_side = max_long_side
        super().__init__(scale=(max_long_side, max(self.short_sides)), keep_ratio=False,
                         clip_object_border=clip_object_border, backend=backend, interpolation=interpolation)

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        height, width = results['img'].shape[:2]
        short_side = random.choice(self.short_sides)
        new_h, new_w = fiber_resize_shape(height, width, short_side, self.max_long_side)
        results['scale'] = (new_w, new_h)
        self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        self._record_homography_matrix(results)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(short_sides={self.short_sides}, max_long_side={self.max_long_side}, '
                f'clip_object_border={self.clip_object_border}, backend={self.backend!r}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class ClipBoxesToImage(BaseTransform):
    """Clip xyxy boxes to the image and drop empty ones (the reference's ``clip_to_image(remove_empty=True)``).

    With ``offset=1`` (the reference's ``TO_REMOVE``, for boxes in the "+1" convention, e.g. after mmdet's
    ``GTBoxSubOne_GLIP``) x is clamped to ``[0, W - 1]`` and y to ``[0, H - 1]``; with ``offset=0`` to
    ``[0, W]``/``[0, H]``. A box is kept iff ``x2 > x1`` and ``y2 > y1`` after clipping. Dropped boxes are removed
    from every per-instance key and counted in a warning.

    Required Keys: img_shape (or img), gt_bboxes

    Modified Keys: gt_bboxes, gt_bboxes_labels, gt_ignore_flags, gt_masks

    Args:
        offset (int): 1 for "+1"-convention boxes, 0 for mmdet's. Defaults to 1.
        remove_empty (bool): drop boxes that are empty after clipping. Defaults to True.
    """

    def __init__(self, offset: int = 1, remove_empty: bool = True) -> None:
        self.offset = offset
        self.remove_empty = remove_empty

    def transform(self, results: dict) -> dict:
        boxes = results.get('gt_bboxes')
        if boxes is None or len(boxes) == 0:
            return results
        height, width = results['img_shape'][:2] if 'img_shape' in results else results['img'].shape[:2]
        is_boxes = isinstance(boxes, BaseBoxes)
        array = boxes.tensor.clone() if is_boxes else np.array(boxes, dtype=np.float32)
        array[:, 0::2] = array[:, 0::2].clip(0, width - self.offset)
        array[:, 1::2] = array[:, 1::2].clip(0, height - self.offset)
        results['gt_bboxes'] = type(boxes)(array) if is_boxes else array
        if self.remove_empty:
            keep = np.flatnonzero(np.asarray((array[:, 2] > array[:, 0]) & (array[:, 3] > array[:, 1])))
            if len(keep) < len(array):
                MMLogger.get_current_instance().warning(
                    f'ClipBoxesToImage: dropped {len(array) - len(keep)} of {len(array)} boxes that are empty '
                    f'after clipping to the image ({results.get("img_path", "")})')
                filter_instances(results, keep)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(offset={self.offset}, remove_empty={self.remove_empty})'
