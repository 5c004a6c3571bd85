"""Image pre-processing of the ONNX runtime, numpy and Pillow only: what FIBER's test pipeline and data
preprocessor do (Pillow decoding with the EXIF orientation applied, FIBER's short-side resize with Pillow
bilinear, mean / std normalisation, zero padding to the size divisor)."""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..utils.image_io import load_user_image
from ..utils.resize_rule import fiber_resize_shape
from .metadata import DeploymentError


def read_image(image, orientation: str = 'exif', max_pixels: Optional[int] = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a path, the file's bytes, a PIL image or an RGB array, decoded as the PyTorch
    pipelines decode it (:func:`fiber_mmdet.utils.image_io.load_user_image`: EXIF orientation, 16-bit,
    transparency, the pixel limit checked before decoding)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DeploymentError(f'an array input must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}')
        return image
    return load_user_image(image, channel_order='rgb', orientation=orientation, max_pixels=max_pixels)


class Prepared(NamedTuple):
    """An image ready for the graph.

    Attributes:
        tensor (np.ndarray): (3, H_pad, W_pad) float32, normalised and padded.
        img_hw (tuple[int, int]): resized size (H, W) before padding.
        scale_factor (tuple[float, float]): (w_scale, h_scale), resized over original.
        ori_hw (tuple[int, int]): original size (H, W).
    """
    tensor: np.ndarray
    img_hw: Tuple[int, int]
    scale_factor: Tuple[float, float]
    ori_hw: Tuple[int, int]


def prepare(rgb: np.ndarray, settings: dict, fixed_shape: Optional[Sequence[int]] = None) -> Prepared:
    """Resize, normalise and pad one (H, W, 3) uint8 RGB image as the exported model's test pipeline does."""
    h, w = rgb.shape[:2]
    resize = settings['resize']
    new_h, new_w = fiber_resize_shape(h, w, resize['short_side'], resize['max_long_side'])
    channels = rgb if settings['channel_order'] == 'rgb' else rgb[:, :, ::-1]
    if (new_h, new_w) != (h, w):
        channels = np.asarray(Image.fromarray(np.ascontiguousarray(channels)).resize((new_w, new_h),
                                                                                   Image.BILINEAR))
    mean = np.asarray(settings['mean'], dtype=np.float32)
    std = np.asarray(settings['std'], dtype=np.float32)
    normalised = (channels.astype(np.float32) - mean) / std
    divisor = settings['size_divisor']
    pad_h, pad_w = -(-new_h // divisor) * divisor, -(-new_w // divisor) * divisor
    if fixed_shape is not None:
        if new_h > fixed_shape[0] or new_w > fixed_shape[1]:
            raise DeploymentError(
                f'the graph was exported for inputs of {fixed_shape[0]}x{fixed_shape[1]} (--shape) but this image '
                f'({h}x{w}) is resized to {new_h}x{new_w}: export again with a larger --shape, or without --shape '
                'for any size')
        pad_h, pad_w = fixed_shape
    out = np.full((3, pad_h, pad_w), settings['pad_value'], dtype=np.float32)
    out[:, :new_h, :new_w] = normalised.transpose(2, 0, 1)
    return Prepared(out, (new_h, new_w), (new_w / w, new_h / h), (h, w))


def batch(images: List[Prepared]) -> Tuple[np.ndarray, np.ndarray]:
    """Stack prepared images of one padded size: (B, 3, H, W) and their valid sizes (B, 2) int64."""
    return (np.stack([p.tensor for p in images]),
            np.asarray([p.img_hw for p in images], dtype=np.int64))
