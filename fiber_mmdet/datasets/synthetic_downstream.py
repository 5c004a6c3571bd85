"""A downstream set for the toy model: shapes the toy pre-training never names, in COCO format with train / val /
test splits, to show fine-tuning (the ODinW protocol) on a CPU.

:func:`generate_toy_downstream` writes, deterministically from a seed::

    OUT_DIR/
      images/{train,val,test}/000000.png     128-192 px, 1-4 new shapes + 0-2 toy shapes (not annotated)
      annotations/{train,val,test}.json      COCO instances, categories 1..3 = star, ring, hexagon
      annotations/meta.json                  version, seed, classes, counts

The new shapes (:data:`NOVEL_SHAPES`) come in the toy colours and sizes; the pre-training shapes (circle,
square, ...) appear as unannotated distractors, so a detector must learn the new names, not "any shape".
"""
import json
import os
import os.path as osp
from typing import Tuple

import numpy as np

from .synthetic_shapes import COLOURS, SHAPES, _image_size, _save, _write_json, render, sample_objects

NOVEL_SHAPES: Tuple[str, ...] = ('star', 'ring', 'hexagon')
DOWNSTREAM_VERSION = 1
DOWNSTREAM_SPLITS = ('train', 'val', 'test')


def toy_downstream_version(out_dir: str):
    """Version of the downstream set in ``out_dir``, or None when there is none."""
    meta_file = osp.join(out_dir, 'annotations', 'meta.json')
    if not osp.isfile(meta_file):
        return None
    with open(meta_file, encoding='utf-8') as f:
        return int(json.load(f).get('version', 0))


def generate_toy_downstream(out_dir: str, seed: int = 0, num_train: int = 60, num_val: int = 24,
                            num_test: int = 48, max_distractors: int = 2) -> dict:
    """Write the downstream set (see the module docstring) and return its ``meta.json`` content.

    Args:
        out_dir: output directory.
        seed: split ``i`` draws from ``numpy.random.default_rng([seed, 100 + i])``.
        num_train / num_val / num_test: images per split.
        max_distractors: at most this many unannotated pre-training shapes per image.
    """
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(NOVEL_SHAPES)]
    novel = [(shape, colour) for shape in NOVEL_SHAPES for colour in COLOURS]
    known = [(shape, colour) for shape in SHAPES for colour in COLOURS]
    counts = {}
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    for index, (split, num) in enumerate(zip(DOWNSTREAM_SPLITS, (num_train, num_val, num_test))):
        rng = np.random.default_rng([seed, 100 + index])
        os.makedirs(osp.join(out_dir, 'images', split), exist_ok=True)
        images, annotations = [], []
        for i in range(num):
            width, height = _image_size(rng)
            objects = sample_objects(rng, width, height, int(rng.integers(1, 5)), novel, unique=False)
            num_distractors = len(objects) + int(rng.integers(0, max_distractors + 1))
            distractors = sample_objects(rng, width, height, num_distractors, known, unique=False)
            # keep the distractors that do not touch the annotated objects
            extra = [d for d in distractors if not any(
                d.box[0] < o.box[2] + 3 and o.box[0] < d.box[2] + 3 and d.box[1] < o.box[3] + 3
                and o.box[1] < d.box[3] + 3 for o in objects)][:max_distractors]
            file_name = f'{i:06d}.png'
            _save(render(width, height, objects + extra, int(rng.integers(200, 246))),
                  osp.join(out_dir, 'images', split, file_name))
            images.append(dict(id=i + 1, file_name=file_name, width=width, height=height))
            for o in objects:
                x1, y1, x2, y2 = o.box
                annotations.append(dict(id=len(annotations) + 1, image_id=i + 1,
                                        category_id=NOVEL_SHAPES.index(o.shape) + 1,
                                        bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0,
                                        colour=o.colour, size=o.size))
        _write_json(osp.join(out_dir, 'annotations', f'{split}.json'),
                    dict(info=dict(description=f'fiber_mmdet toy downstream shapes, {split}', seed=seed),
                         images=images, annotations=annotations, categories=categories))
        counts[split] = dict(images=num, boxes=len(annotations))
    meta = dict(version=DOWNSTREAM_VERSION, seed=seed, classes=list(NOVEL_SHAPES), counts=counts,
                box_convention='COCO xywh, exact pixel extents')
    _write_json(osp.join(out_dir, 'annotations', 'meta.json'), meta)
    return meta
