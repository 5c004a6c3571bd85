"""The inferencer's inputs: a folder becomes its image files (:mod:`fiber_mmdet.utils.image_files`), with
what is left out logged."""
import logging
import os
import os.path as osp

from mmengine.logging import print_log

from ..utils.image_files import IMAGE_EXTENSIONS, describe_left_out, is_image_name, scan_image_folder  # noqa: F401


def inputs_to_list(inputs) -> list:
    """The inferencer's inputs as a list: a folder (``str`` or path) -> its images (see
    :func:`scan_image_folder`; what is left out is logged as a warning); a list or tuple unchanged; anything else
    (a file, a URL, an array) -> ``[inputs]``."""
    if isinstance(inputs, (str, os.PathLike)) and osp.isdir(inputs):
        images, left_out = scan_image_folder(inputs)
        if left_out:
            print_log(describe_left_out(os.fspath(inputs), left_out), logger='current', level=logging.WARNING)
        return images
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    return [os.fspath(inputs) if isinstance(inputs, os.PathLike) else inputs]
