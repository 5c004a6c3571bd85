"""Resize, clip and flip exactly as the reference (the flip's "+1" convention included)."""
import random

import numpy as np
import pytest
from mmdet.datasets.transforms import FixScaleResize, RandomFlip_GLIP, Resize
from mmdet.structures.bbox import HorizontalBoxes
from PIL import Image

from fiber_mmdet.datasets.transforms import ClipBoxesToImage, ShortSideResize, fiber_resize_shape

TRAIN_SIDES = (480, 560, 640, 720, 800)


@pytest.mark.parametrize('hw, short, expected', [
    ((480, 640), 800, (800, 1066)),    # long side int(800 * 640 / 480) = int(1066.67): truncated, not rounded
    ((640, 480), 800, (1066, 800)),    # portrait
    ((427, 640), 800, (800, 1199)),    # int(1199.06)
    ((375, 500), 480, (480, 640)),
    ((600, 1000), 800, (800, 1333)),   # 1333.3 > 1333 -> s = int(round(799.8)) = 800, long int(1333.3)
    ((500, 2000), 800, (333, 1332)),   # capped: s = int(round(333.25)) = 333, long int(333 * 4) = 1332
    ((2000, 500), 640, (1332, 333)),   # capped, portrait
    ((300, 1200), 480, (333, 1332)),   # capped from a smaller target too
    ((800, 800), 800, (800, 800)),     # short side already the target: unchanged
    ((800, 1200), 800, (800, 1200)),   # unchanged, long side under the cap
    ((100, 100), 560, (560, 560)),     # square upscale
])
def test_fiber_resize_shape(hw, short, expected):
    assert fiber_resize_shape(*hw, short, 1333) == expected


def _results(h, w, boxes):
    rng = np.random.default_rng(0)
    return dict(img=rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), img_shape=(h, w), ori_shape=(h, w),
                gt_bboxes=HorizontalBoxes(np.asarray(boxes, dtype=np.float32)),
                gt_bboxes_labels=np.arange(len(boxes), dtype=np.int64),
                gt_ignore_flags=np.zeros(len(boxes), dtype=bool), text='a caption', tokens_positive={0: [[0, 1]]})


@pytest.mark.parametrize('h, w', [(48, 64), (64, 48), (30, 120), (50, 50)])
def test_short_side_resize_image_and_boxes(h, w):
    transform = ShortSideResize(short_sides=(80, ), max_long_side=133)
    results = _results(h, w, [[1, 2, 20, 30], [0, 0, w - 1, h - 1]])
    img = results['img'].copy()
    out = transform(results)
    new_h, new_w = fiber_resize_shape(h, w, 80, 133)
    assert out['img'].shape == (new_h, new_w, 3) and out['img_shape'] == (new_h, new_w)
    # pixels: exactly PIL's bilinear resize (what torchvision's F.resize does on a PIL image)
    expected = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BILINEAR))
    assert np.array_equal(out['img'], expected)
    sx, sy = new_w / w, new_h / h
    assert out['scale_factor'] == pytest.approx((sx, sy))
    boxes = out['gt_bboxes'].tensor.numpy()
    assert np.allclose(boxes, np.array([[1, 2, 20, 30], [0, 0, w - 1, h - 1]]) * [sx, sy, sx, sy], atol=1e-4)
    assert out['text'] == 'a caption'


def test_short_side_resize_choice_and_test_scale():
    transform = ShortSideResize(short_sides=TRAIN_SIDES, max_long_side=1333)
    random.seed(0)
    seen = {transform(_results(24, 32, [[1, 1, 5, 5]]))['img_shape'][0] for _ in range(40)}
    assert seen == set(TRAIN_SIDES)
    test = ShortSideResize(short_sides=800)
    assert test(_results(48, 64, [[1, 1, 5, 5]]))['img_shape'] == (800, 1066)


@pytest.mark.parametrize('hw, fiber, fix_scale', [
    ((100, 177), (753, 1332), (753, 1333)),  # capped: the reference rounds the short side, then truncates the long
    ((100, 199), (670, 1333), (669, 1333)),
    ((205, 199), (824, 800), (824, 799)),    # uncapped: int(199 * (800 / 199)) = 799 in floating point
])
def test_mmdet_fix_scale_resize_differs(hw, fiber, fix_scale):
    """Why ShortSideResize exists: mmdet's keep-ratio resizes scale both sides by one factor
    min(1333 / long, 800 / short) (FixScaleResize truncates, Resize / RandomChoiceResize round with +0.5)."""
    ours = ShortSideResize(short_sides=800, max_long_side=1333)(_results(*hw, [[1, 1, 5, 5]]))
    fix = FixScaleResize(scale=(800, 1333), keep_ratio=True, backend='pillow')(_results(*hw, [[1, 1, 5, 5]]))
    assert ours['img_shape'] == fiber and fix['img_shape'] == fix_scale


def test_mmdet_keep_ratio_resize_rounds():
    ours = ShortSideResize(short_sides=800, max_long_side=1333)(_results(480, 640, [[1, 1, 5, 5]]))
    rounded = Resize(scale=(1333, 800), keep_ratio=True, backend='pillow')(_results(480, 640, [[1, 1, 5, 5]]))
    assert ours['img_shape'] == (800, 1066) and rounded['img_shape'] == (800, 1067)


def test_clip_boxes_to_image(log_messages):
    results = _results(20, 30, [[-5, 2, 10, 8], [25, 15, 40, 25], [31, 2, 40, 8], [3, 3, 3, 9]])
    out = ClipBoxesToImage(offset=1)(results)
    assert out['gt_bboxes'].tensor.tolist() == [[0, 2, 10, 8], [25, 15, 29, 19]]
    assert out['gt_bboxes_labels'].tolist() == [0, 1] and len(out['gt_ignore_flags']) == 2
    assert any('dropped 2 of 4 boxes' in m for m in log_messages)
    out = ClipBoxesToImage(offset=0)(_results(20, 30, [[25, 15, 40, 25]]))
    assert out['gt_bboxes'].tensor.tolist() == [[25, 15, 30, 20]]


def test_horizontal_flip_plus_one_convention():
    """mmdet's RandomFlip_GLIP: x1' = W - x2 - 1, x2' = W - x1 - 1; caption and spans untouched."""
    results = _results(10, 20, [[2, 3, 5, 7], [0, 0, 19, 9]])
    img = results['img'].copy()
    out = RandomFlip_GLIP(prob=1.0, direction='horizontal')(results)
    assert out['gt_bboxes'].tensor.tolist() == [[14, 3, 17, 7], [0, 0, 19, 9]]
    assert np.array_equal(out['img'], img[:, ::-1])
    assert out['text'] == 'a caption' and out['tokens_positive'] == {0: [[0, 1]]}
    assert out['flip'] is True and out['flip_direction'] == 'horizontal'


def test_registered():
    from mmdet.registry import TRANSFORMS
    assert TRANSFORMS.get('ShortSideResize') is ShortSideResize
    assert TRANSFORMS.get('ClipBoxesToImage') is ClipBoxesToImage
