"""Image loading whose failures name the file (mmcv's errors say ``<_io.BytesIO ...>``, not the path)."""
import os
from typing import Optional

from mmcv.transforms import LoadImageFromFile

from mmdet.registry import TRANSFORMS


class ImageLoadError(OSError):
    """An image file that cannot be read or decoded; the message starts with its path."""


def image_load_error(path: str, error: BaseException) -> ImageLoadError:
    """An :class:`ImageLoadError` for ``path``, saying what is wrong with the file when it can tell."""
    try:
        size = os.path.getsize(path)
        what = 'the file is empty (0 bytes)' if size == 0 else f'{size} bytes'
    except OSError:
        what = 'the file cannot be opened'
    return ImageLoadError(f'{path}: cannot read this image ({what}): {type(error).__name__}: {error}')


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments and keys) that raises :class:`ImageLoadError` naming the file
    when it cannot be read or decoded (empty, truncated, not an image), in training and in evaluation alike.

    In evaluation :class:`ContainBadSamplesTestLoop` decides whether such a sample stops the run or is counted
    and skipped.
    """

    def transform(self, results: dict) -> Optional[dict]:
        try:
            return super().transform(results)
        except ImageLoadError:
            raise
        except Exception as error:  # mmcv / PIL / cv2 raise many types (OSError, UnidentifiedImageError, ...)
            raise image_load_error(results['img_path'], error) from error
