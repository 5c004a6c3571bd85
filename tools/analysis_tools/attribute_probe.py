"""Where a toy FIBER keeps (or loses) colour and shape: linear probes of its features and its caption tokens' scores.

Two measurements on the built-in toy data (``python tools/misc/make_toy_dataset.py``):

* **Probes.** At the centre of each object of the OD training images, the stride-8 features of the backbone
  (the FPN's input), of the FPN and of the DyHead tower (the box features the token dot products read) are
  fitted with a ridge-regression classifier on 70 % of the objects and scored on the other 30 %: colour (5
  classes) and shape (5 classes) accuracy, chance 0.2.
* **Token scores.** For each phrase of the attribute grounding split ("green triangle" beside a red triangle),
  at the best anchor on the named object and on its same-shape twin (the anchor with IoU >= 0.5 that scores the
  phrase highest): the sigmoid scores of the colour word and of the shape word. A colour word that scores the
  same on both does not read the colour.

Example::

    python tools/analysis_tools/attribute_probe.py configs/toy/fiber_toy.py work_dirs/quickstart/iter_1900.pth
    python tools/analysis_tools/attribute_probe.py configs/toy/fiber_toy.py none   # the random initialisation
"""
import argparse
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose, pseudo_collate

LEVELS = ('backbone', 'fpn', 'head_tower')  # all read at the first FPN level's stride


def ridge_probe(features: np.ndarray, labels: Sequence[str], train_fraction: float = 0.7,
                alpha: float = 1e-2) -> float:
    """Held-out accuracy of a one-vs-rest ridge classifier on ``features`` (N, C): fitted on the first
    ``train_fraction`` of the rows, scored on the rest."""
    classes = sorted(set(labels))
    targets = np.array([[label == c for c in classes] for label in labels], dtype=np.float64)
    x = np.c_[features.astype(np.float64), np.ones(len(features))]
    split = int(train_fraction * len(x))
    if split == 0 or split == len(x):
        raise ValueError(f'{len(x)} objects are too few to fit on {train_fraction:.0%} and score the rest')
    weights = np.linalg.solve(x[:split].T @ x[:split] + alpha * np.eye(x.shape[1]), x[:split].T @ targets[:split])
    return float(((x[split:] @ weights).argmax(1) == targets[split:].argmax(1)).mean())


class _Capture:
    """Hooks that keep the stride-8 maps of the backbone, FPN and DyHead tower, and the head's per-anchor
    boxes (original-image pixels) and token scores (A, T) of the last image."""

    def __init__(self, model) -> None:
        self.maps: Dict[str, torch.Tensor] = {}
        self.anchors: Dict[str, torch.Tensor] = {}
        head = model.bbox_head
        model.neck.register_forward_hook(self._neck)
        head.head.dyhead_tower.register_forward_hook(
            lambda module, args, out: self.maps.__setitem__('head_tower', out['visual'][0][0]))
        original = head._predict_by_feat_single

        def predict_single(bbox_pred_list, score_factor_list, cls_logit_list, mlvl_priors, token_positive_maps,
                           img_meta, **kwargs):  # mmdet passes them by these names
            boxes = [head.bbox_coder.decode(p, b.permute(1, 2, 0).reshape(-1, 4), max_shape=img_meta['img_shape'])
                     for b, p in zip(bbox_pred_list, mlvl_priors)]
            scale = boxes[0].new_tensor(img_meta['scale_factor']).repeat(2)
            self.anchors = dict(
                boxes=torch.cat(boxes) / scale, tokens=torch.cat([x.sigmoid() for x in cls_logit_list]),
                centerness=torch.cat([c.permute(1, 2, 0).reshape(-1) for c in score_factor_list]).sigmoid(),
                token_map=token_positive_maps, scale_factor=img_meta['scale_factor'])
            return original(bbox_pred_list=bbox_pred_list, score_factor_list=score_factor_list,
                            cls_logit_list=cls_logit_list, mlvl_priors=mlvl_priors,
                            token_positive_maps=token_positive_maps, img_meta=img_meta, **kwargs)

        head._predict_by_feat_single = predict_single

    def _neck(self, module, args, out) -> None:
        self.maps['backbone'] = args[0][0][0]
        self.maps['fpn'] = out[0][0]

    def best_anchor_tokens(self, box: Sequence[float], tokens: List[int]) -> Optional[List[float]]:
        """Token scores at the anchor with IoU >= 0.5 to ``box`` (xyxy) that scores ``tokens`` highest."""
        from mmdet.structures.bbox import bbox_overlaps
        iou = bbox_overlaps(self.anchors['boxes'], torch.tensor([box], dtype=torch.float32))[:, 0]
        score = self.anchors['tokens'][:, tokens].mean(-1) * self.anchors['centerness']
        score = torch.where(iou >= 0.5, score, torch.full_like(score, -1.0))
        if score.max() < 0:
            return None
        return self.anchors['tokens'][int(score.argmax()), tokens].tolist()


def _run(model, pipeline, **inputs) -> None:
    with torch.no_grad():
        model.test_step(pseudo_collate([pipeline(dict(img_id=0, **inputs))]))


def probe_features(model, pipeline, capture: _Capture, image_dir: str, lines: Sequence[dict],
                   class_names: Sequence[str]) -> dict:
    """Colour and shape probe accuracies per feature level, from the objects of ODVG OD ``lines`` (images in
    ``image_dir``, run with the class prompt of ``class_names``)."""
    stride = model.bbox_head.prior_generator.strides[0][0]  # the FPN's first level, and the backbone stage it reads
    features = {level: [] for level in LEVELS}
    colours, shapes = [], []
    for line in lines:
        instances = line['detection']['instances']
        if not instances:
            continue
        _run(model, pipeline, img_path=osp.join(image_dir, line['filename']), text=list(class_names))
        w_scale, h_scale = (s / stride for s in capture.anchors['scale_factor'])
        for level in LEVELS:
            fmap = capture.maps[level]
            for inst in instances:
                x1, y1, x2, y2 = inst['bbox']
                row = min(int((y1 + y2) / 2 * h_scale), fmap.shape[1] - 1)
                col = min(int((x1 + x2) / 2 * w_scale), fmap.shape[2] - 1)
                features[level].append(fmap[:, row, col].numpy())
        colours += [inst['colour'] for inst in instances]
        shapes += [inst['category'] for inst in instances]
    return {level: dict(colour=ridge_probe(np.stack(features[level]), colours),
                        shape=ridge_probe(np.stack(features[level]), shapes)) for level in LEVELS} | dict(
                            num_objects=len(colours))


def token_scores(model, pipeline, capture: _Capture, image_dir: str, grounding: dict) -> dict:
    """Mean colour-word and shape-word scores on the named objects and on their twins, how often the phrase's
    mean token score is higher on the named object, and how many phrases could not be scored (no twin in the
    image, or no anchor with IoU >= 0.5 on the object or the twin)."""
    rows, skipped = [], dict(no_twin=0, no_anchor=0)
    for image in grounding['images']:
        _run(model, pipeline, img_path=osp.join(image_dir, image['file_name']), text=image['caption'],
             tokens_positive=image['tokens_positive_eval'])
        for k, spans in enumerate(image['tokens_positive_eval']):
            beg, end = spans[0]
            words = image['caption'][beg:end].split()
            tokens = capture.anchors['token_map'][k + 1]
            if len(tokens) != len(words):  # the colour and shape words are read as the phrase's last two tokens
                raise ValueError(f'{image["file_name"]}: phrase {" ".join(words)!r} has {len(tokens)} tokens for '
                                 f'{len(words)} words; the probe needs one token per word (the toy vocabulary)')
            colour, shape = words[-2:]
            target = [o for o in image['objects'] if (o['colour'], o['shape']) == (colour, shape)]
            twin = [o for o in image['objects'] if o['shape'] == shape and o['colour'] != colour]
            if not target or not twin:
                skipped['no_twin'] += 1
                continue
            on_target = capture.best_anchor_tokens(target[0]['bbox'], tokens)
            on_twin = capture.best_anchor_tokens(twin[0]['bbox'], tokens)
            if on_target is None or on_twin is None:
                skipped['no_anchor'] += 1
                continue
            rows.append((on_target[-2], on_twin[-2], on_target[-1], on_twin[-1],
                         np.mean(on_target) > np.mean(on_twin)))
    if not rows:
        raise ValueError(f'no grounding phrase could be scored on its object and its twin ({skipped})')
    r = np.array(rows, dtype=np.float64)
    return dict(num_phrases=len(rows), skipped=skipped, colour_word=dict(target=r[:, 0].mean(), twin=r[:, 1].mean()),
                shape_word=dict(target=r[:, 2].mean(), twin=r[:, 3].mean()), target_above_twin=r[:, 4].mean())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint, or 'none' for the random initialisation")
    parser.add_argument('--num-images', type=int, default=400, help='OD training images to probe (default 400)')
    parser.add_argument('--json', help='also write the figures to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import fiber_mmdet  # noqa: F401  (registers the modules)
    from mmdet.apis import init_detector
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    data_root = cfg.data_root
    with open(osp.join(data_root, 'annotations', 'meta.json')) as f:
        meta = json.load(f)  # the toy dataset's own file layout
    model = init_detector(cfg, None if args.checkpoint == 'none' else args.checkpoint, device='cpu')
    pipeline = Compose([t for t in cfg.test_pipeline if t['type'] != 'LoadAnnotations'])
    capture = _Capture(model)
    with open(osp.join(data_root, meta['files']['train_od'])) as f:
        lines = [json.loads(line) for line in f][:args.num_images]
    with open(osp.join(data_root, meta['files']['grounding'])) as f:
        grounding = json.load(f)
    result = dict(
        probes=probe_features(model, pipeline, capture, osp.join(data_root, meta['data_prefix']['train_od']),
                              lines, meta['shapes']),
        tokens=token_scores(model, pipeline, capture, osp.join(data_root, meta['data_prefix']['grounding']),
                            grounding))
    probes, tokens = result['probes'], result['tokens']
    print(f'linear probes at the object centres ({probes["num_objects"]} objects, chance 0.2):')
    for level in LEVELS:
        print(f'  {level:<11} colour {probes[level]["colour"]:.3f}  shape {probes[level]["shape"]:.3f}')
    print(f'token scores on {tokens["num_phrases"]} attribute-grounding phrases (named object / its twin):')
    for word in ('colour_word', 'shape_word'):
        print(f'  {word.replace("_", " "):<11} {tokens[word]["target"]:.3f} / {tokens[word]["twin"]:.3f}')
    print(f'  phrase scores the named object above its twin: {tokens["target_above_twin"]:.3f}')
    if any(tokens['skipped'].values()):
        print(f'  not scored: {tokens["skipped"]["no_twin"]} phrase(s) without a twin in the image, '
              f'{tokens["skipped"]["no_anchor"]} without an anchor of IoU >= 0.5 on the object or its twin')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
