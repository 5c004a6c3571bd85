"""Test time: the images of a batch grouped by the padded size each would have alone.

A batch is padded to its largest image (``DetDataPreprocessor``), and that padding is not neutral for FIBER: the
Swin windows, the shifted-window masks and the text layers, which attend to the whole padded image map, all see
it, so an image batched with a larger one gets other features and other boxes than alone. Each group here holds
the images whose own padded size (``pad_shape``: the image padded to ``pad_size_divisor``) is the same; its rows
of the batch, cropped to that size, are exactly the input each image gets alone (padding is zero, after
normalisation, in both cases). The detector uses this in :meth:`FIBER.predict`.
"""
import math
from typing import List, NamedTuple, Sequence, Tuple

from torch import Tensor


class PaddedShapeGroup(NamedTuple):
    """Images of a batch that run together.

    Attributes:
        indices (list[int]): their positions in the batch.
        inputs (Tensor): (len(indices), 3, H, W) their rows of the batch, cropped to their padded size.
    """
    indices: List[int]
    inputs: Tensor


def padded_shape(meta: dict, divisor: int, batch_shape: Tuple[int, int]) -> Tuple[int, int]:
    """(H, W) an image is padded to when it is alone in its batch: its ``pad_shape``, else its ``img_shape``
    rounded up to ``divisor``, else the batch's; never more than the batch's ``batch_shape``."""
    if 'pad_shape' in meta:
        h, w = meta['pad_shape'][:2]
    elif 'img_shape' in meta:
        h, w = (math.ceil(s / divisor) * divisor for s in meta['img_shape'][:2])
    else:
        h, w = batch_shape
    return min(int(h), batch_shape[0]), min(int(w), batch_shape[1])


def padded_shape_groups(batch_inputs: Tensor, metas: Sequence[dict], divisor: int = 1) -> List[PaddedShapeGroup]:
    """Group the images of a batch by :func:`padded_shape`, in order of first appearance.

    Args:
        batch_inputs (Tensor): (B, 3, H, W) the padded batch.
        metas (list[dict]): each image's meta information (``pad_shape`` / ``img_shape``).
        divisor (int): the data preprocessor's ``pad_size_divisor``.

    Returns:
        list[PaddedShapeGroup]: one group (the whole batch, not copied) when every image has the batch's size.

    Example:
        >>> import torch
        >>> groups = padded_shape_groups(torch.zeros(3, 3, 64, 96), [dict(pad_shape=(64, 96)),
        ...                              dict(pad_shape=(64, 64)), dict(pad_shape=(64, 96))])
        >>> [(g.indices, tuple(g.inputs.shape[-2:])) for g in groups]
        [([0, 2], (64, 96)), ([1], (64, 64))]
    """
    batch_shape = tuple(batch_inputs.shape[-2:])
    by_shape = {}
    for i, meta in enumerate(metas):
        by_shape.setdefault(padded_shape(meta, divisor, batch_shape), []).append(i)
    if list(by_shape) == [batch_shape]:
        return [PaddedShapeGroup(list(range(len(metas))), batch_inputs)]
    groups = []
    for (h, w), indices in by_shape.items():
        rows = batch_inputs if len(indices) == len(metas) else batch_inputs[indices]
        groups.append(PaddedShapeGroup(indices, rows[..., :h, :w].contiguous()))
    return groups
