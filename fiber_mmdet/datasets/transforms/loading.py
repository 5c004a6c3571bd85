"""Image loading for training, evaluation and inference with one decoder (:func:`~fiber_mmdet.utils.image_io.
load_user_image`): EXIF orientation, 16-bit, transparency, palette and CMYK handled alike everywhere, files over a
pixel limit refused before decoding, and failures that name the file (mmcv's say ``<_io.BytesIO ...>``)."""
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.dataset import Compose

from mmdet.datasets.transforms import InferencerLoader
from mmdet.registry import TRANSFORMS
from ...utils.image_io import ImageLoadError, image_load_error, load_user_image

# mmcv's ``color_type`` is the orientation key: both mmcv's loader and this one read it the same way
ORIENTATION_OF_COLOR_TYPE = {'color': 'exif', 'color_ignore_orientation': 'stored'}


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments and keys) decoding with
    :func:`~fiber_mmdet.utils.image_io.load_user_image`, and raising :class:`ImageLoadError` naming the file when
    it cannot be read, cannot be decoded or is over the pixel limit.

    Decoding is always Pillow's (what FIBER was trained on); ``imdecode_backend`` is kept for mmcv's signature.
    JPEG (RGB, greyscale, CMYK), PNG (8/16-bit, palette, alpha), WebP, TIFF, BMP and GIF files are read as
    ``(H, W, 3)`` uint8 BGR; transparency is composited on white.

    Required Keys: ``img_path``; optional ``height`` / ``width`` (the annotation's image size, as mmdet's COCO and
    ODVG datasets give it). Added Keys: ``img``, ``img_shape``, ``ori_shape`` (``(H, W)`` as decoded).

    A photo whose EXIF orientation turns it by 90 degrees, decoded as ``width x height`` while its annotation says
    ``height x width``, was annotated on the other orientation: it raises :class:`ImageLoadError` naming the file and
    the ``color_type`` that matches, instead of training on boxes that lie across the picture.

    Args:
        color_type (str): the orientation of the pixels, the same key as mmcv's loader:
            ``'color'`` (default) applies the file's EXIF orientation, so the image is the one a viewer shows;
            ``'color_ignore_orientation'`` keeps the pixels as stored. Annotations must have been drawn on the
            same orientation, and a config's training and test loaders should agree.
        max_pixels (int, optional): refuse images whose width x height is larger, before decoding. Defaults to
            None: ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (what Pillow itself refuses).
        Others: as mmcv's ``LoadImageFromFile``.

    In evaluation :class:`ContainBadSamplesTestLoop` decides whether an unreadable sample stops the run or is
    counted and skipped.
    """

    def __init__(self, *args, max_pixels: Optional[int] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.color_type not in ORIENTATION_OF_COLOR_TYPE:
            raise ValueError(f'{type(self).__name__}: color_type={self.color_type!r} is not supported; FIBER reads '
                             f'3-channel images: use one of {tuple(ORIENTATION_OF_COLOR_TYPE)}')
        self.orientation = ORIENTATION_OF_COLOR_TYPE[self.color_type]
        self.max_pixels = max_pixels

    @classmethod
    def from_loader(cls, loader: LoadImageFromFile,
                    max_pixels: Optional[int] = None) -> 'CheckedLoadImageFromFile':
        """This loader with the arguments of an mmcv ``LoadImageFromFile``."""
        checked = cls(to_float32=loader.to_float32, color_type=loader.color_type,
                      imdecode_backend=loader.imdecode_backend, ignore_empty=loader.ignore_empty,
                      backend_args=loader.backend_args, max_pixels=max_pixels)
        checked.file_client_args = loader.file_client_args
        return checked

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        try:
            if self.file_client_args is not None:
                content = fileio.FileClient.infer_client(self.file_client_args, path).get(path)
            else:
                content = fileio.get(path, backend_args=self.backend_args)
            img = load_user_image(content, orientation=self.orientation, max_pixels=self.max_pixels, name=path)
        except Exception as error:  # fileio / PIL raise many types (OSError, UnidentifiedImageError, ...)
            if self.ignore_empty:
                return None
            if isinstance(error, ImageLoadError):
                raise
            raise image_load_error(path, error) from error
        self._check_orientation(path, img.shape[:2], results)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _check_orientation(self, path: str, shape: Tuple[int, int], results: dict) -> None:
        annotated = results.get('height', None), results.get('width', None)
        if None in annotated or shape == annotated or shape != annotated[::-1]:
            return  # a size that differs otherwise (a resized copy) is not an orientation question
        other = next(c for c, o in ORIENTATION_OF_COLOR_TYPE.items() if o != self.orientation)
        read = 'EXIF orientation applied' if self.orientation == 'exif' else 'EXIF orientation ignored'
        drawn_on = 'the pixels as stored' if self.orientation == 'exif' else 'the picture as viewers show it'
        raise ImageLoadError(
            f'{path}: read as {shape[1]}x{shape[0]} (color_type={self.color_type!r}: {read}) but its annotation says '
            f'{annotated[1]}x{annotated[0]}: the boxes were drawn on the picture turned the other way. If the '
            f'dataset was annotated on {drawn_on}, set color_type={other!r} on the image loaders of the config '
            '(training and test alike)')

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f', max_pixels={self.max_pixels})'


def with_user_image_loader(pipeline: Compose, max_pixels: Optional[int] = None) -> Compose:
    """Make a built pipeline decode files with :class:`CheckedLoadImageFromFile`, keeping each loader's arguments.

    mmcv's ``LoadImageFromFile`` is replaced; in mmdet's ``InferencerLoader`` (what ``DetInferencer`` puts in
    place of the config's loader) its file loader is, and arrays still pass through unchanged. Test pipelines keep
    mmcv's loader by name because mmdet's ``DetInferencer`` looks it up so; this gives them the shared decoder.

    Args:
        pipeline: a ``Compose`` (changed in place).
        max_pixels: the pixel limit of the replaced loaders (None: Pillow's, see :func:`image_pixel_limit`).

    Returns:
        Compose: ``pipeline``.
    """
    for i, transform in enumerate(pipeline.transforms):
        if isinstance(transform, InferencerLoader):
            if not isinstance(transform.from_file, CheckedLoadImageFromFile):
                transform.from_file = CheckedLoadImageFromFile.from_loader(transform.from_file, max_pixels)
        elif isinstance(transform, LoadImageFromFile) and not isinstance(transform, CheckedLoadImageFromFile):
            pipeline.transforms[i] = CheckedLoadImageFromFile.from_loader(transform, max_pixels)
    return pipeline


def pipeline_orientation(pipeline: Compose) -> str:
    """``'exif'`` or ``'stored'``: how the first image loader of a built pipeline orients the pixels (mmcv's, ours,
    or the file loader inside mmdet's ``InferencerLoader``), so a picture drawn outside the pipeline matches its
    boxes; ``'exif'`` (mmcv's default) when it has none."""
    for transform in pipeline.transforms:
        loader = transform.from_file if isinstance(transform, InferencerLoader) else transform
        if isinstance(loader, LoadImageFromFile):
            return ORIENTATION_OF_COLOR_TYPE.get(loader.color_type, 'exif')
    return 'exif'
