"""Reading a user's image file as the detector sees it: one decoder for the inferencer, the demos and the datasets.

What photo libraries, scanners and annotation tools write is read as an ``(H, W, 3)`` uint8 array:

* EXIF orientation: ``orientation='exif'`` (default) turns the pixels as a viewer shows them (a phone photo
  stored sideways with orientation 6 comes out upright); ``'stored'`` keeps the pixels as stored in the file.
  mmcv's loaders spell the same choice ``color_type='color'`` / ``'color_ignore_orientation'``.
* 16-bit greyscale (PNG ``I;16``, TIFF ``I``) is scaled to 8 bits (``value >> 8``, as OpenCV reads it) instead of
  being clipped at 255, which turns most of such an image white;
* transparency (RGBA, LA, a palette with a transparent entry) is composited on white, as an image viewer or a
  web page shows it, rather than dropped (which reveals whatever colour the transparent pixels hold);
* palette, greyscale, bilevel and CMYK images are converted to RGB by Pillow; a multi-frame file (GIF, TIFF)
  gives its first frame.

Before anything is decoded the header's size is checked against a pixel limit, so a decompression bomb (a small
file whose header says e.g. 50000x50000) is refused with an :class:`ImageLoadError` naming the file, its size and
the limit. The default limit is what Pillow itself refuses, ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (178,956,970
pixels with Pillow's default): a 108-megapixel phone photo is read, a 200-megapixel one needs
``PIL.Image.MAX_IMAGE_PIXELS`` raised. A server can pass a smaller ``max_pixels``.
"""
import io
import os
import re
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

ORIENTATIONS = ('exif', 'stored')
BACKGROUND = (255, 255, 255)  # what transparent pixels become (RGB)

ImageSource = Union[str, os.PathLike, bytes, Image.Image]


class ImageLoadError(OSError):
    """An image file that cannot be read or decoded, or is too large to decode; the message starts with its
    name (path)."""


def image_load_error(path: str, error: BaseException, num_bytes: Optional[int] = None) -> ImageLoadError:
    """An :class:`ImageLoadError` for ``path``, saying what is wrong with the file when it can tell
    (``num_bytes``: the size of the content read, else the file's size on disk)."""
    if num_bytes is None:
        try:
            num_bytes = os.path.getsize(path)
        except OSError:
            num_bytes = None
    what = ('the file cannot be opened' if num_bytes is None else
            'the file is empty (0 bytes)' if num_bytes == 0 else f'{num_bytes} bytes')
    return ImageLoadError(f'{path}: cannot read this image ({what}): {type(error).__name__}: {error}')


def image_pixel_limit(max_pixels: Optional[int] = None) -> Optional[int]:
    """The pixel limit in force: ``max_pixels`` if given, else ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (read at call
    time, so raising Pillow's setting raises it), None when Pillow's check is switched off."""
    if max_pixels is not None:
        if max_pixels <= 0:
            raise ValueError(f'max_pixels must be a positive number of pixels, got {max_pixels}')
        return int(max_pixels)
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)


def _too_large(name: str, size: Optional[Tuple[int, int]], pixels: int, limit: int) -> ImageLoadError:
    shape = f'{size[0]}x{size[1]} pixels ({pixels})' if size else f'{pixels} pixels'
    return ImageLoadError(
        f'{name}: {shape} is over the limit of {limit} pixels, so it is not decoded (a decompression bomb or an '
        'image too large to process); resize it, or raise the limit (max_pixels, and PIL.Image.MAX_IMAGE_PIXELS '
        f'for more than {image_pixel_limit()} pixels)')


def _source_name(image: ImageSource, name: Optional[str]) -> str:
    if name is not None:
        return name
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return getattr(image, 'filename', None) or f'<{type(image).__name__} image>'


def open_user_image(image: ImageSource, max_pixels: Optional[int] = None,
                    name: Optional[str] = None) -> Image.Image:
    """Open ``image`` (a path, the file's bytes or an opened ``PIL.Image``) reading its header only, and refuse it
    when its width x height is over the pixel limit (see :func:`image_pixel_limit`).

    Raises:
        ImageLoadError: the file is missing, empty or not an image Pillow knows, or it is over the limit; the
            message starts with ``name`` (the path by default).
    """
    name = _source_name(image, name)
    limit = image_pixel_limit(max_pixels)
    if isinstance(image, Image.Image):
        pil = image
    else:
        source = io.BytesIO(image) if isinstance(image, bytes) else os.fspath(image)
        try:
            pil = Image.open(source)
        except Image.DecompressionBombError as error:  # over Pillow's own limit: refused while reading the header
            found = re.search(r'\((\d+) pixels\)', str(error))
            pixels = int(found.group(1)) if found else 0
            raise _too_large(name, None, pixels, min(limit or pixels, image_pixel_limit() or pixels)) from error
        except FileNotFoundError as error:
            raise ImageLoadError(f'{name}: no such file') from error
        except Exception as error:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError, ...
            raise image_load_error(name, error, None if isinstance(source, str) else len(image)) from error
    pixels = pil.size[0] * pil.size[1]
    if limit is not None and pixels > limit:
        raise _too_large(name, pil.size, pixels, limit)
    return pil


def check_image_pixels(image: ImageSource, max_pixels: Optional[int] = None,
                       name: Optional[str] = None) -> Tuple[int, int]:
    """``(width, height)`` of ``image`` as stored, read from its header without decoding it.

    Raises:
        ImageLoadError: not an image, or over the pixel limit (message: name, size, limit).
    """
    pil = open_user_image(image, max_pixels, name)
    size = pil.size
    if pil is not image:
        pil.close()
    return size


def pil_to_rgb(pil: Image.Image, orientation: str = 'exif') -> Image.Image:
    """An opened image -> an 8-bit ``'RGB'`` image: EXIF orientation applied (``'exif'``) or not (``'stored'``),
    16-bit greyscale scaled to 8 bits, transparency composited on white, anything else converted by Pillow."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f'orientation must be one of {ORIENTATIONS}, got {orientation!r}')
    if orientation == 'exif':
        pil = ImageOps.exif_transpose(pil)
    if pil.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
        # Pillow's own conversion clips at 255 (a 16-bit image becomes mostly white); OpenCV keeps the top byte
        values = np.clip(np.asarray(pil, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8), 'L').convert('RGB')
    if pil.mode == 'P' and 'transparency' in pil.info or pil.mode == 'PA':
        pil = pil.convert('RGBA')
    if pil.mode in ('RGBA', 'LA', 'RGBa', 'La'):
        rgba = pil.convert('RGBA')
        background = Image.new('RGBA', rgba.size, BACKGROUND + (255, ))
        return Image.alpha_composite(background, rgba).convert('RGB')
    return pil if pil.mode == 'RGB' else pil.convert('RGB')


def load_user_image(image: ImageSource, channel_order: str = 'bgr', orientation: str = 'exif',
                    max_pixels: Optional[int] = None, name: Optional[str] = None) -> np.ndarray:
    """Decode ``image`` (a path, the file's bytes or an opened ``PIL.Image``) as the detector sees it.

    Args:
        image: the image file.
        channel_order: ``'bgr'`` (MMDetection's pipelines) or ``'rgb'`` (for display).
        orientation: ``'exif'`` (as a viewer shows it) or ``'stored'`` (the file's pixels as stored).
        max_pixels: the pixel limit checked before decoding (see :func:`image_pixel_limit`).
        name: how the image is named in errors (the path by default).

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8, in ``channel_order``.

    Raises:
        ImageLoadError: missing, empty, truncated or unknown file, or over the pixel limit; the message starts
            with ``name``.
    """
    if channel_order not in ('bgr', 'rgb'):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    name = _source_name(image, name)
    pil = open_user_image(image, max_pixels, name)
    try:
        array = np.asarray(pil_to_rgb(pil, orientation))
    except Exception as error:  # truncated or corrupt data is found while decoding
        raise image_load_error(name, error, len(image) if isinstance(image, bytes) else None) from error
    finally:
        if pil is not image:
            pil.close()
    return np.ascontiguousarray(array[..., ::-1]) if channel_order == 'bgr' else array
