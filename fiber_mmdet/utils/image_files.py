"""Which files of a folder are images: what the inferencer, ``demo/image_demo.py`` and ``demo/onnx_demo.py`` run on
(no torch needed).

mmdet's ``DetInferencer`` matches a fixed list of lower-case suffixes, so ``IMG_0001.JPG`` from a camera is
skipped without a word, and takes the files in the file system's order. Here extensions are matched
case-insensitively, hidden files (``.DS_Store``, macOS ``._IMG_0001.jpg``) and sub-folders are left out, the images
are sorted by name, and what is left out is counted and logged.
"""
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Tuple, Union

# what Pillow decodes and people call an image (HEIC/AVIF need Pillow plug-ins, so they are reported instead)
IMAGE_EXTENSIONS = ('.bmp', '.dib', '.gif', '.jfif', '.jpe', '.jpeg', '.jpg', '.pbm', '.pgm', '.png', '.pnm',
                    '.ppm', '.tif', '.tiff', '.webp')
SHOWN_NAMES = 5  # names listed per kind of left-out file


def is_image_name(name: str) -> bool:
    """Whether a file name is an image by its extension (any case), and not hidden (``.name``)."""
    return not name.startswith('.') and osp.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_image_folder(folder: Union[str, os.PathLike]) -> Tuple[List[str], Dict[str, List[str]]]:
    """The image files directly in ``folder``, sorted by name, and the entries left out.

    Returns:
        tuple: ``(paths, left_out)``; ``left_out`` maps ``'hidden'``, ``'not an image'`` and ``'folder'`` to the
        names of that kind (sorted); sub-folders are not searched.
    """
    folder = os.fspath(folder)
    images, left_out = [], defaultdict(list)
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if name.startswith('.'):
            left_out['hidden'].append(name)
        elif osp.isdir(path):
            left_out['folder'].append(name)
        elif is_image_name(name):
            images.append(path)
        else:
            left_out['not an image'].append(name)
    return images, dict(left_out)


def describe_left_out(folder: str, left_out: Dict[str, List[str]]) -> str:
    """One line: ``'images/: 3 entries left out: 2 not an image (notes.txt, a.heic), 1 hidden (.DS_Store)'``."""
    parts = []
    for kind, names in left_out.items():
        shown = ', '.join(names[:SHOWN_NAMES]) + (f', ... {len(names) - SHOWN_NAMES} more'
                                                   if len(names) > SHOWN_NAMES else '')
        parts.append(f'{len(names)} {kind} ({shown})')
    total = sum(len(n) for n in left_out.values())
    return (f'{folder}: {total} entr{"y" if total == 1 else "ies"} left out: ' + ', '.join(parts) +
            f'; images are files ending in {", ".join(IMAGE_EXTENSIONS)} (any case)')
