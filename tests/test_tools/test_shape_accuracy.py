"""tools/analysis_tools/shape_accuracy.py: the matching of an object to its detection, the shares, and a run on
the toy data layout."""
import json

import pytest
import torch

from .conftest import REPO_ROOT, load_tool

CLASSES = ('circle', 'square', 'triangle', 'diamond', 'cross')


def _tool():
    return load_tool('analysis_tools/shape_accuracy.py')


def test_the_best_scoring_overlapping_detection_names_the_object():
    label_of = _tool().predicted_label
    gt = (10, 10, 30, 30)
    boxes = torch.tensor([[11., 11., 30., 30.],    # IoU 0.90, score 0.6
                          [10., 10., 26., 30.],    # IoU 0.80, score 0.7: the answer
                          [40., 40., 60., 60.],    # no overlap, the highest score
                          [10., 10., 20., 20.]])   # IoU 0.25, second highest
    scores = torch.tensor([0.6, 0.7, 0.99, 0.9])
    labels = torch.tensor([0, 3, 1, 2])
    assert label_of(gt, boxes, scores, labels) == 3
    assert label_of(gt, boxes, scores, labels, iou_thr=0.85) == 0
    assert label_of(gt, boxes, scores, labels, iou_thr=0.95) is None
    assert label_of(gt, boxes[2:3], scores[2:3], labels[2:3]) is None
    assert label_of(gt, boxes[:0], scores[:0], labels[:0]) is None


def test_shares_per_pair_kind_and_confusion():
    records = [dict(shape='circle', held_out=False, predicted='circle'),
               dict(shape='circle', held_out=False, predicted='square'),
               dict(shape='square', held_out=False, predicted=None),
               dict(shape='circle', held_out=True, predicted='square')]
    result = _tool().summarise(records, CLASSES)
    assert result['seen'] == dict(objects=3, right=1 / 3, missed=1 / 3)
    assert result['held_out'] == dict(objects=1, right=0.0, missed=0.0)
    assert result['confusion']['circle']['circle'] == 1 and result['confusion']['circle']['square'] == 2
    assert result['confusion']['square']['missed'] == 1
    assert sum(sum(row.values()) for row in result['confusion'].values()) == len(records)
    assert _tool().summarise(records[:1], CLASSES)['held_out'] == dict(objects=0, right=None, missed=None)


def test_runs_on_the_toy_layout(toy_root, toy_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(toy_root)  # the toy config's data_root is relative: data/toy_shapes/
    out = tmp_path / 'shapes.json'
    result = _tool().main([str(REPO_ROOT / 'configs' / 'toy' / 'fiber_toy.py'), toy_checkpoint, '--json', str(out)])
    printed = capsys.readouterr().out
    assert 'seen pairs:' in printed and 'confusion' in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    annotations = toy_root / 'data' / 'toy_shapes' / 'annotations'
    coco = json.loads((annotations / 'val_coco.json').read_text())
    held = {tuple(pair) for pair in json.loads((annotations / 'meta.json').read_text())['held_out']}
    names = {c['id']: c['name'] for c in coco['categories']}
    num_held = sum((names[a['category_id']], a['colour']) in held for a in coco['annotations'])
    assert result['held_out']['objects'] == num_held
    assert result['seen']['objects'] == len(coco['annotations']) - num_held > 0
    assert sum(sum(row.values()) for row in result['confusion'].values()) == len(coco['annotations'])
    for kind in ('seen', 'held_out'):
        if result[kind]['objects']:
            assert 0 <= result[kind]['right'] <= 1 and 0 <= result[kind]['missed'] <= 1


def test_data_without_colours_is_an_error_that_names_the_file(toy_root, toy_checkpoint, tmp_path, monkeypatch):
    import shutil
    root = tmp_path / 'copy'
    shutil.copytree(toy_root / 'data', root / 'data')
    coco_file = root / 'data' / 'toy_shapes' / 'annotations' / 'val_coco.json'
    coco = json.loads(coco_file.read_text())
    del coco['annotations'][0]['colour']
    coco_file.write_text(json.dumps(coco))
    monkeypatch.chdir(root)
    with pytest.raises(ValueError, match=r"val_coco.json: annotation \d+ has no 'colour'"):
        _tool().main([str(REPO_ROOT / 'configs' / 'toy' / 'fiber_toy.py'), toy_checkpoint])
