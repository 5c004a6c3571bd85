"""Which shape a toy FIBER gives each held-out detection object, for seen and for held-out colour-shape pairs.

On the built-in toy data (``python tools/misc/make_toy_dataset.py``), each object of the validation images
(``annotations/val_coco.json``) is scored as in the AP50 evaluation: all five class names in one prompt. The
object's predicted shape is the label of its best-scoring detection with IoU >= ``--iou`` (no such detection:
missed). The objects are split by whether their colour-shape pair occurs in training (``meta.json``'s
``held_out``). A model that learns "purple objects are never circles" from the training data gets the shapes of
held-out pairs wrong while it gets those of seen pairs right (docs/toy.md, section "Findings", has the figures).

Example::

    python tools/analysis_tools/shape_accuracy.py configs/toy/fiber_toy_attribute_first.py \\
        work_dirs/quickstart/iter_1900.pth [--json shapes.json]

Printed: for seen and held-out pairs, the number of objects, the share whose shape is right and the share
missed; then the confusion matrix (rows: true shape, columns: predicted shape or missed).
"""
import argparse
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction


def predicted_label(gt_box: Sequence[float], boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                    iou_thr: float = 0.5) -> Optional[int]:
    """Label of the highest-scoring detection with IoU >= ``iou_thr`` to ``gt_box`` (xyxy); None if none.

    Args:
        gt_box: the object's box, xyxy.
        boxes: (N, 4) detections, xyxy. scores, labels: (N,).
    """
    from mmdet.structures.bbox import bbox_overlaps
    if len(boxes) == 0:
        return None
    iou = bbox_overlaps(boxes.float(), boxes.new_tensor([list(gt_box)], dtype=torch.float32))[:, 0]
    hits = (iou >= iou_thr).nonzero()[:, 0]
    if len(hits) == 0:
        return None
    return int(labels[hits[scores[hits].argmax()]])


def summarise(records: List[dict], classes: Sequence[str]) -> Dict[str, object]:
    """Shares per pair kind and the confusion matrix, from ``dict(shape, held_out, predicted)`` records
    (``predicted``: a class name or None)."""
    result: Dict[str, object] = {}
    for kind, held in (('seen', False), ('held_out', True)):
        group = [r for r in records if r['held_out'] == held]
        n = len(group)
        result[kind] = dict(objects=n,
                            right=sum(r['predicted'] == r['shape'] for r in group) / n if n else None,
                            missed=sum(r['predicted'] is None for r in group) / n if n else None)
    columns = list(classes) + ['missed']
    result['confusion'] = {c: {p: sum(r['shape'] == c and (r['predicted'] or 'missed') == p for r in records)
                               for p in columns} for c in classes}
    return result


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--iou', type=float, default=0.5, help='IoU a detection needs to name an object')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', help='also write the figures to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args(argv)

    import fiber_mmdet  # noqa: F401  (registers the model)
    from mmdet.apis import inference_detector, init_detector

    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    root = cfg.data_root
    with open(osp.join(root, 'annotations', 'meta.json')) as f:  # the toy dataset's index of its files
        meta = json.load(f)
    held_out = {tuple(pair) for pair in meta['held_out']}
    coco_file, image_dir = osp.join(root, meta['files']['val']), osp.join(root, meta['data_prefix']['val'])
    with open(coco_file) as f:
        coco = json.load(f)
    classes = [c['name'] for c in sorted(coco['categories'], key=lambda c: c['id'])]
    label_of = {c['id']: c['name'] for c in coco['categories']}
    objects: Dict[int, List[dict]] = {}
    for ann in coco['annotations']:
        if 'colour' not in ann:
            raise ValueError(f"{coco_file}: annotation {ann['id']} has no "
                             "'colour' (not toy data, or written by an older tools/misc/make_toy_dataset.py: "
                             "generate it again)")
        objects.setdefault(ann['image_id'], []).append(ann)

    model = init_detector(cfg, args.checkpoint, device=args.device)
    prompt = '. '.join(classes) + '.'
    records = []
    for image in coco['images']:
        pred = inference_detector(model, osp.join(image_dir, image['file_name']),
                                  text_prompt=prompt, custom_entities=True).pred_instances.cpu()
        for ann in objects.get(image['id'], []):
            x, y, w, h = ann['bbox']
            label = predicted_label((x, y, x + w, y + h), pred.bboxes, pred.scores, pred.labels, args.iou)
            shape = label_of[ann['category_id']]
            records.append(dict(shape=shape, held_out=(shape, ann['colour']) in held_out,
                                predicted=None if label is None else classes[label]))
    result = summarise(records, classes)

    print(f'shape of the best detection with IoU >= {args.iou} on {len(records)} validation objects '
          f'({len(coco["images"])} images, prompt "{prompt}")')
    for kind in ('seen', 'held_out'):
        r = result[kind]
        if r['objects']:
            print(f"  {kind.replace('_', '-')} pairs: {r['objects']} objects, shape right {r['right']:.3f}, "
                  f"missed {r['missed']:.3f}")
    print('confusion (rows: true shape; columns: predicted):')
    columns = classes + ['missed']
    print('  ' + ' '.join(f'{c:>8}' for c in [''] + columns))
    for c in classes:
        print('  ' + ' '.join([f'{c:>8}'] + [f"{result['confusion'][c][p]:>8}" for p in columns]))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
