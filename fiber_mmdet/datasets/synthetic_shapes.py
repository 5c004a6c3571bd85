"""The built-in toy dataset: coloured shapes with attribute captions, small enough to train on a CPU in minutes.

:func:`generate_toy_dataset` writes, deterministically from a seed (same seed -> byte-identical files)::

    OUT_DIR/
      images/{train_od,train_od_attr,train_vg,val,grounding,grounding_unique_colour}/000000.png ...
                            128-192 px, 1-6 shapes on a plain background
      annotations/
        label_map.json      {"0": "circle", ...}                 ODVG label map (mmdet's 0-based convention)
        train_od.jsonl      ODVG OD lines (detection.instances: bbox xyxy, label, category, colour, size)
        label_map_attr.json {"0": "red circle", ...}             the 20 seen colour-shape pairs as classes
        train_od_attr.jsonl ODVG OD lines labelled by colour and shape (classes of label_map_attr.json)
        label_map_colour.json {"0": "red", ...}                  the five colours as classes
        train_od_colour.jsonl the images of train_od_attr, labelled by colour alone (classes of
                            label_map_colour.json), for configs/toy/fiber_toy_colour_only.py
        train_vg.jsonl      ODVG VG lines (grounding.caption naming every object + regions with phrase and
                            tokens_positive)
        val_coco.json       COCO instances (categories 1..5 = the shapes) for box AP
        grounding_val.json  mmdet Flickr30kDataset / MDETR format (caption, tokens_positive_eval, phrase_ids)
        grounding_unique_colour_val.json   the same format, the version-2 grounding split
        meta.json           version, seed, vocabulary, held-out combinations, counts, data_prefix of every split
      tokenizer/            byte-level BPE (RoBERTa layout) trained on the dataset's own text

Objects are a shape (circle, square, triangle, diamond, cross) in a colour (red, green, blue, yellow, purple) and
a size (small, large). Five colour-shape combinations -- one per colour and one per shape, e.g. "green triangle"
-- are held out: they never appear in any training image (OD or VG). The grounding captions name held-out
combinations only. Training needs the colour too: each VG image is an attribute scene of seen pairs (a named
object beside a twin of its shape in another colour), and ``train_od_attr`` labels its boxes by colour and shape.
In ``grounding`` each named object shares its image with a seen object of the same shape and size in another
colour, and often with a seen object of its colour, so only colour and shape together pick the box;
``grounding_unique_colour`` (version 2's split) holds held-out objects only, one per colour, where the shape alone
suffices. The detection validation split draws objects from all 25 combinations (so its AP also measures
shape detection on unseen colour-shape pairs). Boxes are exact pixel extents, stored xyxy with
``x2 = x + w`` (ODVG) or xywh (COCO). Captions name objects by attributes ("the small red triangle", "a blue circle
left of a green square"); a phrase span covers the attributes and the shape name, not the determiner.
"""
import json
import os
import os.path as osp
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'diamond', 'cross')
COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (215, 40, 40),
    'green': (40, 160, 60),
    'blue': (40, 90, 220),
    'yellow': (235, 200, 30),
    'purple': (140, 60, 180),
}
# side length range in pixels (version 2: 14-22 and 34-50; larger objects gave AP50 0.68 instead of 0.53)
SIZES: Dict[str, Tuple[int, int]] = {'small': (22, 30), 'large': (38, 54)}
# (shape, colour) pairs that never occur in training: shape i gets colour i-1, so every shape and every colour is
# still seen in training, only the pairing is new.
HELD_OUT: Tuple[Tuple[str, str], ...] = tuple(
    (shape, list(COLOURS)[(i - 1) % len(COLOURS)]) for i, shape in enumerate(SHAPES))
IMAGE_SIDE = (128, 192)
# Written to meta.json; bumped whenever the same arguments would produce different files, so that callers (the
# quickstart) can tell a stale dataset from a current one. 2: training captions name every object of their image.
# 3: the grounding split needs the colour as well as the shape (version 2's split is kept as
# grounding_unique_colour); larger objects; half of the VG mentions name one attribute.
# 4: VG images are attribute scenes of seen pairs (twins and cousins, as in the grounding split); 600 more OD
# images labelled by colour and shape (train_od_attr).
# 5: the same images labelled by colour alone (train_od_colour); no other file changes.
DATASET_VERSION = 5
SPLITS = ('train_od', 'train_vg', 'val', 'grounding', 'grounding_unique_colour', 'train_od_attr')
# the two held-out grounding splits: what their images hold
GROUNDING_SPLITS = {
    'grounding': 'held-out pairs beside seen ones of the same shape (and often the same colour): needs both',
    'grounding_unique_colour': 'held-out pairs only, one per colour: the shape alone picks the box (version 2)',
}


@dataclass
class ShapeObject:
    """One drawn object; ``box`` is xyxy in pixels with exclusive ``x2, y2`` (``x2 = x + side``)."""
    shape: str
    colour: str
    size: str
    box: Tuple[int, int, int, int]

    @property
    def combo(self) -> Tuple[str, str]:
        return self.shape, self.colour

    def phrase(self, with_size: bool, part: str = 'full') -> str:
        """"small red triangle" (``full``), "small red shape" (``colour``: the colour alone) or "small triangle"
        (``shape``: the shape alone); the size word only ``with_size``."""
        words = {'full': [self.colour, self.shape], 'colour': [self.colour, 'shape'], 'shape': [self.shape]}[part]
        return ' '.join(([self.size] if with_size else []) + words)


def all_combos() -> List[Tuple[str, str]]:
    return [(shape, colour) for shape in SHAPES for colour in COLOURS]


def seen_combos() -> List[Tuple[str, str]]:
    return [combo for combo in all_combos() if combo not in HELD_OUT]


# --------------------------------------------------------------------------------------------------- drawing
def draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject) -> None:
    """Draw ``obj`` so that it touches all four sides of its box."""
    x1, y1, x2, y2 = obj.box
    r, b = x2 - 1, y2 - 1  # inclusive right / bottom pixel
    cx, cy = (x1 + r) / 2, (y1 + b) / 2
    fill = COLOURS[obj.colour]
    if obj.shape == 'circle':
        draw.ellipse([x1, y1, r, b], fill=fill)
    elif obj.shape == 'square':
        draw.rectangle([x1, y1, r, b], fill=fill)
    elif obj.shape == 'triangle':
        draw.polygon([(cx, y1), (r, b), (x1, b)], fill=fill)
    elif obj.shape == 'diamond':
        draw.polygon([(cx, y1), (r, cy), (cx, b), (x1, cy)], fill=fill)
    elif obj.shape == 'cross':
        arm = max(2, (x2 - x1) // 3)
        lo_x, lo_y = x1 + (x2 - x1 - arm) // 2, y1 + (y2 - y1 - arm) // 2
        draw.rectangle([lo_x, y1, lo_x + arm - 1, b], fill=fill)
        draw.rectangle([x1, lo_y, r, lo_y + arm - 1], fill=fill)
    # shapes of the downstream set only (synthetic_downstream.py): never named in the toy pre-training
    elif obj.shape == 'ring':
        draw.ellipse([x1, y1, r, b], outline=fill, width=max(2, (x2 - x1) // 5))
    elif obj.shape == 'hexagon':
        hw, hh = (r - x1) / 2, (b - y1) / 2
        draw.polygon([(x1 + hw / 2, y1), (r - hw / 2, y1), (r, cy), (r - hw / 2, b), (x1 + hw / 2, b), (x1, cy)],
                     fill=fill)
    elif obj.shape == 'star':
        outer, inner = (r - x1) / 2, (r - x1) / 5
        points = [(cx + (outer if i % 2 == 0 else inner) * np.sin(np.pi * i / 5),
                   cy - (outer if i % 2 == 0 else inner) * np.cos(np.pi * i / 5)) for i in range(10)]
        draw.polygon(points, fill=fill)
    else:
        raise ValueError(f'unknown shape {obj.shape!r}')


def render(width: int, height: int, objects: Sequence[ShapeObject], background: int) -> Image.Image:
    image = Image.new('RGB', (width, height), (background, background, background))
    draw = ImageDraw.Draw(image)
    for obj in objects:
        draw_object(draw, obj)
    return image


# ------------------------------------------------------------------------------------------------- sampling
def _overlaps(box: Tuple[int, int, int, int], others: Sequence[ShapeObject], margin: int = 3) -> bool:
    return any(box[0] < o.box[2] + margin and o.box[0] < box[2] + margin and box[1] < o.box[3] + margin
               and o.box[1] < box[3] + margin for o in others)


def _try_place(rng: np.random.Generator, width: int, height: int, side: int,
               placed: Sequence[ShapeObject]) -> Optional[Tuple[int, int, int, int]]:
    """A random ``side`` x ``side`` box inside the image that keeps clear of ``placed``, or None (one attempt)."""
    x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    box = (x, y, x + side, y + side)
    return None if _overlaps(box, placed) else box


def _random_side(rng: np.random.Generator, size: str) -> int:
    return int(rng.integers(SIZES[size][0], SIZES[size][1] + 1))


def sample_objects(rng: np.random.Generator, width: int, height: int, num: int,
                   combos: Sequence[Tuple[str, str]], unique: bool) -> List[ShapeObject]:
    """Up to ``num`` non-overlapping objects with (shape, colour) from ``combos`` (distinct if ``unique``)."""
    objects: List[ShapeObject] = []
    for _ in range(50 * max(num, 1)):
        if len(objects) == num:
            break
        shape, colour = combos[int(rng.integers(len(combos)))]
        if unique and any(o.combo == (shape, colour) for o in objects):
            continue
        size = 'small' if rng.random() < 0.5 else 'large'
        box = _try_place(rng, width, height, _random_side(rng, size), objects)
        if box is not None:
            objects.append(ShapeObject(shape, colour, size, box))
    return objects


def sample_attribute_scene(rng: np.random.Generator, width: int, height: int, num_targets: int,
                           targets: Sequence[Tuple[str, str]] = HELD_OUT,
                           cousin_prob: float = 0.5) -> Tuple[List[ShapeObject], List[ShapeObject]]:
    """Objects of a scene where only colour and shape together pick an object, and the targets among them.

    Each target (a distinct pair from ``targets``: the held-out pairs for the grounding split, seen pairs for
    training captions) comes with a twin of the same shape and size in another colour, and with ``cousin_prob``
    with a cousin of the same colour and another shape; twins and cousins are seen pairs. A caption naming the
    target therefore needs its colour and its shape: shape alone is right at most half the time. A target whose
    twin does not fit is dropped with it.
    """
    seen = set(seen_combos())
    objects: List[ShapeObject] = []
    chosen: List[ShapeObject] = []
    for shape, colour in (targets[int(i)] for i in rng.permutation(len(targets))[:num_targets]):
        if any(o.combo == (shape, colour) for o in objects):  # already placed as another target's twin or cousin
            continue
        size = 'small' if rng.random() < 0.5 else 'large'
        twins = [c for c in COLOURS
                 if c != colour and (shape, c) in seen and not any(o.combo == (shape, c) for o in objects)]
        cousins = [s for s in SHAPES
                   if s != shape and (s, colour) in seen and not any(o.combo == (s, colour) for o in objects)]
        if not twins:
            continue
        side = _random_side(rng, size)
        group = [(shape, colour, size, side), (shape, twins[int(rng.integers(len(twins)))], size, side)]
        if cousins and rng.random() < cousin_prob:
            other = 'small' if rng.random() < 0.5 else 'large'
            group.append((cousins[int(rng.integers(len(cousins)))], colour, other, _random_side(rng, other)))
        placed: List[ShapeObject] = []
        for obj_shape, obj_colour, obj_size, obj_side in group:
            for _ in range(50):
                box = _try_place(rng, width, height, obj_side, objects + placed)
                if box is not None:
                    placed.append(ShapeObject(obj_shape, obj_colour, obj_size, box))
                    break
            if box is None and len(placed) < 2:  # the target and its same-shape twin, or neither
                placed = []
                break
        if placed:
            objects += placed
            chosen.append(placed[0])
    return objects, chosen


def _relation(a: ShapeObject, b: ShapeObject) -> Optional[str]:
    """Spatial relation of ``a`` to ``b`` when the boxes are separated along the dominant axis, else None."""
    dx = (a.box[0] + a.box[2]) - (b.box[0] + b.box[2])
    dy = (a.box[1] + a.box[3]) - (b.box[1] + b.box[3])
    if abs(dx) >= abs(dy):
        if a.box[2] <= b.box[0]:
            return 'left of'
        if b.box[2] <= a.box[0]:
            return 'right of'
    else:
        if a.box[3] <= b.box[1]:
            return 'above'
        if b.box[3] <= a.box[1]:
            return 'below'
    return None


class _Caption:
    """Caption builder recording the character span of each mentioned object."""

    def __init__(self) -> None:
        self.text = ''
        self.mentions: List[Tuple[ShapeObject, int, int]] = []

    def add(self, text: str) -> '_Caption':
        self.text += text
        return self

    def mention(self, obj: ShapeObject, with_size: bool, part: str = 'full') -> '_Caption':
        beg = len(self.text)
        self.text += obj.phrase(with_size, part)
        self.mentions.append((obj, beg, len(self.text)))
        return self


def _mention_parts(rng: np.random.Generator, chosen: Sequence[ShapeObject], objects: Sequence[ShapeObject],
                   partial_prob: float) -> List[str]:
    """How each chosen object is named: by colour and shape, or (with ``partial_prob``) by the colour alone or
    the shape alone where that attribute is unique in the image, so that the phrase still picks one object."""
    parts = []
    for obj in chosen:
        allowed = [part for part, key in (('colour', 'colour'), ('shape', 'shape'))
                   if sum(getattr(o, key) == getattr(obj, key) for o in objects) == 1]
        partial = allowed and rng.random() < partial_prob
        parts.append(allowed[int(rng.integers(len(allowed)))] if partial else 'full')
    return parts


def make_caption(rng: np.random.Generator, objects: Sequence[ShapeObject], name_all: bool = False,
                 partial_prob: float = 0.0) -> _Caption:
    """A caption naming 1-3 of ``objects`` (all of them with ``name_all``; distinct combinations) by their
    attributes, with a spatial relation when two objects are named and clearly separated. With
    ``partial_prob`` > 0 some objects are named by one attribute (see :func:`_mention_parts`): the colour and
    shape words then also train apart, which is what naming an unseen pairing needs."""
    num = len(objects) if name_all else int(rng.integers(1, min(3, len(objects)) + 1))
    chosen = [objects[i] for i in sorted(rng.choice(len(objects), size=num, replace=False))]
    det = ('a', 'the', 'one')
    with_size = [bool(rng.random() < 0.5) for _ in chosen]
    parts = _mention_parts(rng, chosen, objects, partial_prob) if partial_prob > 0 else ['full'] * num
    caption = _Caption()
    if num == 1:
        if rng.random() < 0.5:
            caption.add('there is ')
        caption.add(f'{det[int(rng.integers(3))]} ').mention(chosen[0], with_size[0], parts[0])
    elif num == 2 and _relation(chosen[0], chosen[1]) is not None and rng.random() < 0.7:
        rel = _relation(chosen[0], chosen[1])
        caption.add(f'{det[int(rng.integers(3))]} ').mention(chosen[0], with_size[0], parts[0])
        caption.add(f' {rel} {det[int(rng.integers(2))]} ').mention(chosen[1], with_size[1], parts[1])
    else:
        for i, obj in enumerate(chosen):
            if i:
                caption.add(' and ' if i == len(chosen) - 1 else ', ')
            caption.add(f'{det[int(rng.integers(2))]} ').mention(obj, with_size[i], parts[i])
    return caption.add('.')


# ------------------------------------------------------------------------------------------------- writing
def _image_size(rng: np.random.Generator) -> Tuple[int, int]:
    lo, hi = IMAGE_SIDE
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _save(image: Image.Image, path: str) -> None:
    image.save(path, format='PNG', optimize=False, compress_level=6)


def _object_record(obj: ShapeObject) -> dict:
    return dict(shape=obj.shape, colour=obj.colour, size=obj.size, bbox=list(obj.box))


def _write_jsonl(path: str, lines: Sequence[dict]) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        for line in lines:
            f.write(json.dumps(line, sort_keys=True) + '\n')


def _write_json(path: str, obj: dict) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, sort_keys=True, indent=None, separators=(',', ':'))


def toy_dataset_version(out_dir: str) -> Optional[int]:
    """Version of the toy dataset in ``out_dir`` (1 for files written before versions were recorded), or None
    when there is none. Compare with :data:`DATASET_VERSION` to tell a stale dataset from a current one."""
    meta_file = osp.join(out_dir, 'annotations', 'meta.json')
    if not osp.isfile(meta_file):
        return None
    with open(meta_file, encoding='utf-8') as f:
        return int(json.load(f).get('version', 1))


def generate_toy_dataset(out_dir: str,
                         seed: int = 0,
                         num_train_od: int = 1200,
                         num_train_vg: int = 400,
                         num_val: int = 100,
                         num_grounding: int = 100,
                         empty_fraction: float = 0.02,
                         partial_prob: float = 0.5,
                         vg_contrast_prob: float = 1.0,
                         num_train_od_attr: int = 600,
                         tokenizer_vocab_size: int = 512,
                         with_tokenizer: bool = True) -> dict:
    """Write the toy dataset to ``out_dir`` (see the module docstring) and return its ``meta.json`` content.

    Args:
        out_dir: output directory (created; existing files with the same names are overwritten).
        seed: every split draws from ``numpy.random.default_rng([seed, split_index])``.
        num_train_od / num_train_vg / num_val / num_grounding: number of images per split (the grounding split
            has 1-2 captions per image, one record each).
        empty_fraction: fraction of OD training images drawn without objects (exercises the empty-image filter).
        partial_prob: share of training-caption mentions that name an object by its colour alone or its shape
            alone (where unique in the image); the held-out captions always name both.
        vg_contrast_prob: share of VG training images drawn as attribute scenes of seen pairs (each named object
            beside a twin of its shape in another colour, often beside a cousin of its colour), where a caption
            token can only be right about its box by reading the colour; the other VG images hold 1-3 distinct
            seen pairs (version 3).
        num_train_od_attr: OD training images whose classes are the 20 seen colour-shape pairs ("red circle"),
            so that the prompts of the OD transform list same-shape pairs in other colours as negatives.
        tokenizer_vocab_size: vocabulary size of the trained tokenizer.
        with_tokenizer: train and write ``tokenizer/``.
    """
    start = time.perf_counter()
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    for split in SPLITS:
        os.makedirs(osp.join(out_dir, 'images', split), exist_ok=True)
    rngs = {split: np.random.default_rng([seed, i]) for i, split in enumerate(SPLITS)}
    label_map = {str(i): shape for i, shape in enumerate(SHAPES)}
    shape_to_label = {shape: i for i, shape in enumerate(SHAPES)}

    def new_image(split: str, index: int, num_range: Tuple[int, int], combos, unique: bool,
                  contrast: bool = False):
        rng = rngs[split]
        width, height = _image_size(rng)
        num = int(rng.integers(num_range[0], num_range[1] + 1))
        if contrast:  # num seen targets, each with its twin and often its cousin
            objects = sample_attribute_scene(rng, width, height, num, combos)[0]
        else:
            objects = sample_objects(rng, width, height, num, combos, unique)
        background = int(rng.integers(200, 246))
        file_name = f'{index:06d}.png'
        _save(render(width, height, objects, background), osp.join(out_dir, 'images', split, file_name))
        return file_name, width, height, objects

    # training detection (ODVG OD)
    od_lines = []
    num_empty = 0
    for index in range(num_train_od):
        empty = rngs['train_od'].random() < empty_fraction
        num_empty += int(empty)
        file_name, width, height, objects = new_image('train_od', index, (0, 0) if empty else (1, 5),
                                                      seen_combos(), unique=False)
        od_lines.append(dict(filename=file_name, height=height, width=width, detection=dict(instances=[
            dict(bbox=list(o.box), label=shape_to_label[o.shape], category=o.shape, colour=o.colour, size=o.size)
            for o in objects])))

    # training detection by colour and shape (ODVG OD over the 20 seen pairs as classes, "red circle", ...)
    attr_names = [f'{colour} {shape}' for shape, colour in seen_combos()]
    attr_label = {name: i for i, name in enumerate(attr_names)}
    od_attr_lines = []
    for index in range(num_train_od_attr):
        file_name, width, height, objects = new_image('train_od_attr', index, (1, 5), seen_combos(), unique=False)
        od_attr_lines.append(dict(filename=file_name, height=height, width=width, detection=dict(instances=[
            dict(bbox=list(o.box), label=attr_label[f'{o.colour} {o.shape}'], category=f'{o.colour} {o.shape}',
                 colour=o.colour, size=o.size) for o in objects])))

    # the same images by colour alone ("red. blue. ..."): boxes a model can only name by reading the colour
    colour_label = {colour: i for i, colour in enumerate(COLOURS)}
    od_colour_lines = [dict(line, detection=dict(instances=[
        dict(instance, label=colour_label[instance['colour']], category=instance['colour'])
        for instance in line['detection']['instances']])) for line in od_attr_lines]

    # training grounding (ODVG VG)
    vg_lines, texts = [], []
    for index in range(num_train_vg):
        # every object of a training grounding image is named: an unnamed one would be a background box
        # no draw at all without attribute scenes, so that vg_contrast_prob=0 writes version 3's VG images
        contrast = vg_contrast_prob > 0 and rngs['train_vg'].random() < vg_contrast_prob
        file_name, width, height, objects = new_image('train_vg', index, (1, 2) if contrast else (1, 3),
                                                      seen_combos(), unique=True, contrast=contrast)
        caption = make_caption(rngs['train_vg'], objects, name_all=True, partial_prob=partial_prob)
        texts.append(caption.text)
        vg_lines.append(dict(filename=file_name, height=height, width=width, objects=[
            _object_record(o) for o in objects], grounding=dict(caption=caption.text, regions=[
                dict(bbox=list(o.box), phrase=caption.text[beg:end], tokens_positive=[[beg, end]])
                for o, beg, end in caption.mentions])))

    # validation detection (COCO, all combinations)
    categories = [dict(id=i + 1, name=shape, supercategory='shape') for i, shape in enumerate(SHAPES)]
    val_images, val_annotations = [], []
    for index in range(num_val):
        file_name, width, height, objects = new_image('val', index, (1, 5), all_combos(), unique=False)
        val_images.append(dict(id=index + 1, file_name=file_name, width=width, height=height))
        for o in objects:
            x1, y1, x2, y2 = o.box
            val_annotations.append(dict(id=len(val_annotations) + 1, image_id=index + 1,
                                        category_id=shape_to_label[o.shape] + 1, bbox=[x1, y1, x2 - x1, y2 - y1],
                                        area=(x2 - x1) * (y2 - y1), iscrowd=0, colour=o.colour, size=o.size))
    val_coco = dict(info=dict(description='fiber_mmdet toy shapes, detection validation', seed=seed),
                    images=val_images, annotations=val_annotations, categories=categories)

    # grounding evaluation (Flickr30k / MDETR style): captions that name held-out combinations only
    def grounding_split(split: str, scene) -> dict:
        rng = rngs[split]
        g_images, g_annotations = [], []
        for index in range(num_grounding):
            width, height = _image_size(rng)
            objects, targets = scene(rng, width, height)
            background = int(rng.integers(200, 246))
            file_name = f'{index:06d}.png'
            _save(render(width, height, objects, background), osp.join(out_dir, 'images', split, file_name))
            for sentence_id in range(int(rng.integers(1, 3))):
                caption = make_caption(rng, targets)
                texts.append(caption.text)
                entry_id = len(g_images)
                g_images.append(dict(id=entry_id, file_name=file_name, width=width, height=height,
                                     caption=caption.text, original_img_id=index, sentence_id=sentence_id,
                                     dataset_name='toy_shapes', objects=[_object_record(o) for o in objects],
                                     tokens_positive_eval=[[[beg, end]] for _, beg, end in caption.mentions]))
                for phrase_id, (o, beg, end) in enumerate(caption.mentions):
                    x1, y1, x2, y2 = o.box
                    g_annotations.append(dict(id=len(g_annotations) + 1, image_id=entry_id, category_id=1,
                                              bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1),
                                              iscrowd=0, phrase_ids=phrase_id, tokens_positive=[[beg, end]],
                                              shape=o.shape, colour=o.colour, size=o.size))
        return dict(info=dict(description=f'fiber_mmdet toy shapes, phrase grounding ({GROUNDING_SPLITS[split]})',
                              seed=seed),
                    images=g_images, annotations=g_annotations, categories=[dict(id=1, name='object')])

    def attribute_scene(rng, width, height):
        return sample_attribute_scene(rng, width, height, int(rng.integers(1, 3)))

    def unique_colour_scene(rng, width, height):
        objects = sample_objects(rng, width, height, int(rng.integers(1, 4)), list(HELD_OUT), unique=True)
        return objects, objects

    grounding = grounding_split('grounding', attribute_scene)
    grounding_unique = grounding_split('grounding_unique_colour', unique_colour_scene)

    _write_json(osp.join(ann_dir, 'label_map.json'), label_map)
    _write_jsonl(osp.join(ann_dir, 'train_od.jsonl'), od_lines)
    _write_jsonl(osp.join(ann_dir, 'train_vg.jsonl'), vg_lines)
    _write_json(osp.join(ann_dir, 'label_map_attr.json'), {str(i): name for i, name in enumerate(attr_names)})
    _write_jsonl(osp.join(ann_dir, 'train_od_attr.jsonl'), od_attr_lines)
    _write_json(osp.join(ann_dir, 'label_map_colour.json'), {str(i): colour for colour, i in colour_label.items()})
    _write_jsonl(osp.join(ann_dir, 'train_od_colour.jsonl'), od_colour_lines)
    _write_json(osp.join(ann_dir, 'val_coco.json'), val_coco)
    _write_json(osp.join(ann_dir, 'grounding_val.json'), grounding)
    _write_json(osp.join(ann_dir, 'grounding_unique_colour_val.json'), grounding_unique)

    if with_tokenizer:
        from fiber_mmdet.utils.tokenizer import train_roberta_tokenizer
        # Class-name captions as the OD transform writes them, so names are seen with and without a leading space.
        names = list(SHAPES) + ['background']
        od_texts = ['. '.join(names[i:] + names[:i]) for i in range(len(names))]
        train_roberta_tokenizer(texts + od_texts, osp.join(out_dir, 'tokenizer'), vocab_size=tokenizer_vocab_size)

    meta = dict(
        version=DATASET_VERSION,
        seed=seed,
        shapes=list(SHAPES),
        colours=list(COLOURS),
        sizes={k: list(v) for k, v in SIZES.items()},
        held_out=[list(c) for c in HELD_OUT],
        counts=dict(train_od=num_train_od, train_od_empty=num_empty, train_od_attr=num_train_od_attr,
                    train_od_attr_boxes=sum(len(line['detection']['instances']) for line in od_attr_lines),
                    train_vg=num_train_vg, val=num_val,
                    grounding_images=num_grounding, grounding_records=len(grounding['images']),
                    grounding_unique_colour_records=len(grounding_unique['images']),
                    train_od_boxes=sum(len(line['detection']['instances']) for line in od_lines),
                    val_boxes=len(val_annotations), grounding_boxes=len(grounding['annotations']),
                    grounding_unique_colour_boxes=len(grounding_unique['annotations'])),
        files=dict(label_map='annotations/label_map.json', train_od='annotations/train_od.jsonl',
                   label_map_attr='annotations/label_map_attr.json', train_od_attr='annotations/train_od_attr.jsonl',
                   label_map_colour='annotations/label_map_colour.json',
                   train_od_colour='annotations/train_od_colour.jsonl',
                   train_vg='annotations/train_vg.jsonl', val='annotations/val_coco.json',
                   grounding='annotations/grounding_val.json',
                   grounding_unique_colour='annotations/grounding_unique_colour_val.json',
                   tokenizer='tokenizer' if with_tokenizer else None),
        data_prefix={split: f'images/{split}/' for split in SPLITS},
        box_convention='xyxy with x2 = x + w (exclusive), COCO xywh in val/grounding',
    )
    _write_json(osp.join(ann_dir, 'meta.json'), meta)
    meta['seconds'] = time.perf_counter() - start  # not written: the files stay byte-identical across runs
    return meta
