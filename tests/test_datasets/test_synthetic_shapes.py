"""The toy dataset generator: determinism, held-out combinations, loadable COCO / Flickr-style / ODVG files."""
import hashlib
import importlib.util
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

from fiber_mmdet.datasets.synthetic_shapes import (COLOURS, DATASET_VERSION, HELD_OUT, SHAPES, generate_toy_dataset,
                                                   toy_dataset_version)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _digest(root):
    digest = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                digest[osp.relpath(path, root)] = hashlib.md5(f.read()).hexdigest()
    return digest


def _lines(root, meta, split):
    with open(osp.join(root, meta['files'][split])) as f:
        return [json.loads(line) for line in f]


def test_deterministic(tmp_path, toy_dataset):
    root, _ = toy_dataset
    kwargs = dict(seed=0, num_train_od=60, num_train_od_attr=30, num_train_vg=40, num_val=20, num_grounding=20,
                  empty_fraction=0.1)
    generate_toy_dataset(str(tmp_path / 'a'), **kwargs)
    first = _digest(str(tmp_path / 'a'))
    assert first == _digest(root)  # same seed: byte-identical files, tokenizer included
    generate_toy_dataset(str(tmp_path / 'b'), **dict(kwargs, seed=1, with_tokenizer=False))
    other = _digest(str(tmp_path / 'b'))
    images = [k for k in first if k.startswith('images')]
    assert images and all(k in other for k in images)
    assert sum(first[k] != other[k] for k in images) > 0.9 * len(images)


def test_dataset_version(tmp_path, toy_dataset):
    root, meta = toy_dataset
    assert meta['version'] == DATASET_VERSION == toy_dataset_version(root) >= 3
    assert toy_dataset_version(str(tmp_path / 'missing')) is None
    # files from before versions were recorded read as version 1 (the quickstart then regenerates them)
    old = tmp_path / 'old' / 'annotations'
    old.mkdir(parents=True)
    (old / 'meta.json').write_text(json.dumps({k: v for k, v in meta.items() if k != 'version'}))
    assert toy_dataset_version(str(tmp_path / 'old')) == 1


def test_held_out_combinations_never_in_training(toy_dataset):
    root, meta = toy_dataset
    held_out = {tuple(c) for c in meta['held_out']}
    assert held_out == set(HELD_OUT) and ('triangle', 'green') in held_out
    assert {s for s, _ in held_out} == set(SHAPES) and {c for _, c in held_out} == set(COLOURS)
    train = [(i['category'], i['colour']) for line in _lines(root, meta, 'train_od')
             for i in line['detection']['instances']]
    train += [(o['shape'], o['colour']) for line in _lines(root, meta, 'train_vg') for o in line['objects']]
    assert len(train) > 100 and not held_out & set(train)
    captions = ' '.join(line['grounding']['caption'] for line in _lines(root, meta, 'train_vg'))
    for shape, colour in held_out:
        assert f'{colour} {shape}' not in captions
    grounding = json.load(open(osp.join(root, meta['files']['grounding'])))
    assert {(a['shape'], a['colour']) for a in grounding['annotations']} <= held_out
    # the detection validation split covers unseen pairs too
    val = json.load(open(osp.join(root, meta['files']['val'])))
    shapes = {c['id']: c['name'] for c in val['categories']}
    assert held_out & {(shapes[a['category_id']], a['colour']) for a in val['annotations']}


def test_grounding_needs_colour_and_shape(toy_dataset):
    """Every named object of the grounding split has a seen twin of its shape and size in another colour in its
    image (shape alone is right at most half the time); the version-2 split holds held-out pairs only, one per
    colour."""
    root, meta = toy_dataset
    grounding = json.load(open(osp.join(root, meta['files']['grounding'])))
    images = {im['id']: im for im in grounding['images']}
    same_colour = 0
    for ann in grounding['annotations']:
        objects = images[ann['image_id']]['objects']
        assert (ann['shape'], ann['colour']) in HELD_OUT
        assert any(o['shape'] == ann['shape'] and o['size'] == ann['size'] and o['colour'] != ann['colour']
                   and (o['shape'], o['colour']) not in HELD_OUT for o in objects)
        same_colour += any(o['colour'] == ann['colour'] and o['shape'] != ann['shape'] for o in objects)
    assert 0.2 * len(grounding['annotations']) < same_colour < len(grounding['annotations'])
    unique = json.load(open(osp.join(root, meta['files']['grounding_unique_colour'])))
    assert len(unique['images']) == meta['counts']['grounding_unique_colour_records'] > 0
    for im in unique['images']:
        colours = [o['colour'] for o in im['objects']]
        assert len(set(colours)) == len(colours) and all((o['shape'], o['colour']) in HELD_OUT for o in im['objects'])


def test_vg_spans_and_boxes(toy_dataset):
    root, meta = toy_dataset
    parts = dict(full=0, colour=0, shape=0)
    for line in _lines(root, meta, 'train_vg'):
        caption = line['grounding']['caption']
        # every object is named: an unnamed one would train as background
        assert sorted(r['bbox'] for r in line['grounding']['regions']) == sorted(o['bbox'] for o in line['objects'])
        image = np.asarray(Image.open(osp.join(root, meta['data_prefix']['train_vg'], line['filename'])))
        assert image.shape == (line['height'], line['width'], 3)
        objects = {tuple(o['bbox']): o for o in line['objects']}
        for region in line['grounding']['regions']:
            (beg, end), = region['tokens_positive']
            assert caption[beg:end] == region['phrase']
            obj = objects[tuple(region['bbox'])]
            shape, colour = obj['shape'], obj['colour']
            words = region['phrase'].split()
            # named by colour and shape, or by the one of them that no other object of the image shares
            if words[-2:] == [colour, shape]:
                parts['full'] += 1
            elif words[-2:] == [colour, 'shape']:
                parts['colour'] += 1
                assert [o['colour'] for o in line['objects']].count(colour) == 1
            else:
                assert words[-1] == shape and [o['shape'] for o in line['objects']].count(shape) == 1
                parts['shape'] += 1
            x1, y1, x2, y2 = region['bbox']
            # the box is the exact extent of the object's pixels
            mask = (image[y1:y2, x1:x2] == np.array(COLOURS[colour], dtype=np.uint8)).all(-1)
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x2 - x1, y2 - y1), shape
    # attribute scenes hold same-shape twins, so a shape is seldom unique: shape-only mentions are the rarest
    assert min(parts.values()) > 0.05 * sum(parts.values()), parts


def test_coco_files_load(toy_dataset):
    from pycocotools.coco import COCO
    root, meta = toy_dataset
    val = COCO(osp.join(root, meta['files']['val']))
    assert [c['name'] for c in val.loadCats(val.getCatIds())] == list(SHAPES)
    assert len(val.getImgIds()) == meta['counts']['val'] and len(val.getAnnIds()) == meta['counts']['val_boxes']
    for ann in val.loadAnns(val.getAnnIds()):
        img = val.loadImgs(ann['image_id'])[0]
        x, y, w, h = ann['bbox']
        assert 0 <= x and x + w <= img['width'] and 0 <= y and y + h <= img['height'] and w > 0 and h > 0
    grounding = COCO(osp.join(root, meta['files']['grounding']))
    assert len(grounding.getImgIds()) == meta['counts']['grounding_records']


def test_grounding_split_reads_as_flickr30k(toy_dataset):
    from mmdet.datasets import Flickr30kDataset
    root, meta = toy_dataset
    dataset = Flickr30kDataset(data_root=root, ann_file=meta['files']['grounding'],
                               data_prefix=dict(img=meta['data_prefix']['grounding']), test_mode=True, pipeline=[])
    assert len(dataset) == meta['counts']['grounding_records']
    for index in range(len(dataset)):
        info = dataset[index]
        # Flickr30kMetric pairs phrase i with the boxes whose (renumbered) phrase id is i
        assert sorted(set(info['phrase_ids'])) == list(range(len(info['phrases'])))
        for phrase in info['phrases']:
            assert tuple(phrase.split()[-2:][::-1]) in HELD_OUT
        assert osp.exists(info['img_path'])


def test_odvg_files_load_and_filter(toy_dataset):
    from fiber_mmdet.datasets import FilteredODVGDataset
    root, meta = toy_dataset
    od = FilteredODVGDataset(data_root=root, ann_file=meta['files']['train_od'],
                             label_map_file=meta['files']['label_map'],
                             data_prefix=dict(img=meta['data_prefix']['train_od']), pipeline=[])
    assert meta['counts']['train_od_empty'] > 0  # the fixture asks for 10 % empty images
    assert len(od) == meta['counts']['train_od'] - meta['counts']['train_od_empty']
    assert od.num_filtered_images == meta['counts']['train_od_empty']
    vg = FilteredODVGDataset(data_root=root, ann_file=meta['files']['train_vg'],
                             data_prefix=dict(img=meta['data_prefix']['train_vg']), pipeline=[])
    assert len(vg) == meta['counts']['train_vg']


def test_tokenizer_loads(toy_dataset):
    from transformers import AutoTokenizer
    root, meta = toy_dataset
    tokenizer = AutoTokenizer.from_pretrained(osp.join(root, meta['files']['tokenizer']))
    ids = tokenizer('the small green triangle left of a blue circle.')['input_ids']
    assert ids[0] == 0 and ids[-1] == 2 and tokenizer.pad_token_id == 1
    assert len(ids) <= 13  # each word of the dataset's vocabulary is a single token
    assert tokenizer.unk_token_id not in ids


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'make_toy_dataset', osp.join(REPO_ROOT, 'tools', 'misc', 'make_toy_dataset.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / 'cli'
    cli.main([str(out), '--seed', '3', '--num-train-od', '4', '--num-train-od-attr', '3', '--num-train-vg', '4',
              '--num-val', '2', '--num-grounding', '2', '--no-tokenizer'])
    assert 'held-out combinations: purple circle, red square, green triangle' in capsys.readouterr().out
    meta = json.load(open(out / 'annotations' / 'meta.json'))
    assert meta['seed'] == 3 and meta['files']['tokenizer'] is None and meta['counts']['train_od_attr'] == 3
    # without options the CLI writes what the generator writes by default (1200 OD, 400 VG images, ...)
    args = cli.parse_args([str(out)])
    assert (args.seed, args.num_train_od, args.num_train_od_attr, args.num_train_vg, args.num_val, args.num_grounding,
            args.vocab_size) == (0, 1200, 600, 400, 100, 100, 512)


def test_training_needs_the_colour(toy_dataset):
    """Version 4: every VG training image is an attribute scene of seen pairs (a twin of the same shape in
    another colour beside each target), and ``train_od_attr`` labels boxes by colour and shape, over the 20 seen
    pairs only; the grounding and validation files do not depend on these training options."""
    root, meta = toy_dataset
    seen = {(s, c) for s in SHAPES for c in COLOURS} - set(HELD_OUT)
    lines = _lines(root, meta, 'train_vg')
    for line in lines:
        combos = [(o['shape'], o['colour']) for o in line['objects']]
        assert set(combos) <= seen and len(set(combos)) == len(combos)
        shapes = [shape for shape, _ in combos]
        assert any(shapes.count(s) > 1 for s in shapes), line['filename']  # a same-shape twin in another colour
    with open(osp.join(root, meta['files']['label_map_attr'])) as f:
        attr_names = json.load(f)
    assert sorted(attr_names.values()) == sorted(f'{c} {s}' for s, c in seen)
    od_attr = _lines(root, meta, 'train_od_attr')
    assert len(od_attr) == meta['counts']['train_od_attr'] > 0
    boxes = [i for line in od_attr for i in line['detection']['instances']]
    assert len(boxes) == meta['counts']['train_od_attr_boxes']
    for box in boxes:
        assert attr_names[str(box['label'])] == box['category'] == f'{box["colour"]} {box["category"].split()[1]}'
    assert len({b['category'] for b in boxes}) > 10


def test_colour_split_names_train_od_attr_boxes_by_colour(toy_dataset):
    """Version 5: ``train_od_colour`` is ``train_od_attr`` (same images, same boxes) with the colour as class."""
    root, meta = toy_dataset
    with open(osp.join(root, meta['files']['label_map_colour'])) as f:
        colour_names = json.load(f)
    assert colour_names == {str(i): c for i, c in enumerate(COLOURS)}
    by_colour, by_pair = _lines(root, meta, 'train_od_colour'), _lines(root, meta, 'train_od_attr')
    assert len(by_colour) == len(by_pair) == meta['counts']['train_od_attr']
    for colour_line, pair_line in zip(by_colour, by_pair):
        assert colour_line['filename'] == pair_line['filename']
        colour_boxes, pair_boxes = colour_line['detection']['instances'], pair_line['detection']['instances']
        assert [b['bbox'] for b in colour_boxes] == [b['bbox'] for b in pair_boxes]
        for colour_box, pair_box in zip(colour_boxes, pair_boxes):
            assert colour_names[str(colour_box['label'])] == colour_box['category'] == pair_box['colour']
            assert pair_box['category'].startswith(colour_box['category'] + ' ')


def test_training_options_leave_evaluation_alone(tmp_path, toy_dataset):
    root, _ = toy_dataset
    generate_toy_dataset(str(tmp_path / 'v3'), seed=0, num_train_od=60, num_train_vg=40, num_val=20,
                         num_grounding=20, empty_fraction=0.1, vg_contrast_prob=0.0, num_train_od_attr=0,
                         with_tokenizer=False)
    ours, theirs = _digest(root), _digest(str(tmp_path / 'v3'))
    evaluation = [k for k in ours if k.split(os.sep)[1] in ('val', 'grounding', 'grounding_unique_colour')
                  or k.endswith(('val_coco.json', 'grounding_val.json', 'grounding_unique_colour_val.json'))]
    assert len(evaluation) > 40 and all(ours[k] == theirs[k] for k in evaluation)
    assert ours['annotations/train_od.jsonl'] == theirs['annotations/train_od.jsonl']
    assert ours['annotations/train_vg.jsonl'] != theirs['annotations/train_vg.jsonl']
    # without attribute scenes the VG images hold distinct pairs, often of different shapes only (version 3)
    plain = [json.loads(line) for line in open(tmp_path / 'v3' / 'annotations' / 'train_vg.jsonl')]
    assert any(len({o['shape'] for o in line['objects']}) == len(line['objects']) for line in plain)
