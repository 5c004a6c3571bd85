"""FIBER's test-time resize rule, without torch (the pipelines' ``ShortSideResize`` and the ONNX runtime use it)."""
from typing import Tuple


def fiber_resize_shape(height: int, width: int, short_side: int, max_long_side: int) -> Tuple[int, int]:
    """Output ``(new_h, new_w)`` of the reference's ``Resize.get_size`` (``MB/data/transforms/transforms.py``).

    The short side becomes ``short_side`` unless the long side would exceed ``max_long_side``, in which case the
    short side is ``int(round(max_long_side * short / long))``; the long side is then ``int(s * long / short)``
    (truncated). An image whose short side already equals the target is left as is.
    """
    size = short_side
    if max_long_side is not None and max_long_side > 0:
        min_original, max_original = float(min(width, height)), float(max(width, height))
        if max_original / min_original * size > max_long_side:
            size = int(round(max_long_side * min_original / max_original))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)
