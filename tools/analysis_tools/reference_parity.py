"""Check fiber_mmdet against outputs of the original FIBER implementation.

Usage:
    python tools/analysis_tools/reference_parity.py FIXTURE_DIR [--device cpu]

FIXTURE_DIR holds ``config.json``, ``checkpoint.pth``, ``inputs.pth`` and ``outputs.pth`` in the format of
``shared/fixtures/reference/*/README.md``. The model is built from ``config.json``, the checkpoint converted
with ``fiber_mmdet``'s converter, the inputs run batched and image by image, and every output compared.
Prints max abs / relative error per output and exits 0 only when all are within tolerance:

* features, text states, raw head outputs: max |ours - ref| <= 1e-4 * max |ref| (relative to the tensor's
  scale, as the fixture README measures float32 rounding);
* anchors and ATSS assignment: exact (reg / centerness targets within 1e-5 relative);
* losses: relative error <= 1e-4;
* detections, compared as sets sorted by score: same count, labels equal, boxes within 1e-3 px,
  scores within 1e-4.

On CUDA, TF32 is switched off first (:func:`disable_tf32`, printed): cuDNN runs float32 convolutions in TF32
by default (10-bit mantissa, ~1e-3 relative), which alone exceeds the 1e-4 tolerances.
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional, Tuple

import torch
from mmengine.structures import InstanceData

FEATURE_RTOL = 1e-4
LOSS_RTOL = 1e-4
TARGET_RTOL = 1e-5
BOX_ATOL = 1e-3
SCORE_ATOL = 1e-4


def disable_tf32(device: str) -> Optional[str]:
    """Make float32 matmuls and cuDNN convolutions on ``device`` compute in full float32 (no TF32).

    cuDNN's convolutions default to TF32 on Ampere and later GPUs and the matmul precision can be lowered by
    other code in the process; TF32 rounds the inputs to a 10-bit mantissa (~1e-3 relative error), far outside
    the float32 tolerances of a parity check. Process-wide; nothing to do on other devices.

    Returns:
        str | None: What was set (to print beside the results), or None for a non-CUDA device.
    """
    if torch.device(device).type != 'cuda':
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision('highest')
    return ('TF32 off for parity: torch.backends.cuda.matmul.allow_tf32=False, '
            "torch.backends.cudnn.allow_tf32=False, float32 matmul precision 'highest'")


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| in float64 on the CPU (the absolute error where ``ref`` is all zero);
    same shapes, 0 for empty tensors."""
    ours, ref = ours.detach().double().cpu(), ref.detach().double().cpu()
    if not ref.numel():
        return 0.
    abs_err = (ours - ref).abs().max().item()
    scale = ref.abs().max().item()
    return abs_err / scale if scale > 0 else abs_err


class Report:
    """Collects comparison rows and whether each passed."""

    def __init__(self) -> None:
        self.rows: List[Tuple[str, str, str, bool]] = []

    def tensor(self, name: str, ours: torch.Tensor, ref: torch.Tensor, rtol: float = FEATURE_RTOL) -> None:
        ours, ref = ours.detach().double().cpu(), ref.detach().double().cpu()
        if ours.shape != ref.shape:
            self.rows.append((name, f'shape {tuple(ours.shape)} vs {tuple(ref.shape)}', '', False))
            return
        abs_err = (ours - ref).abs().max().item() if ref.numel() else 0.
        rel = relative_error(ours, ref)
        self.rows.append((name, f'{abs_err:.3e}', f'{rel:.3e}', rel <= rtol))

    def exact(self, name: str, ok: bool, detail: str = '') -> None:
        self.rows.append((name, detail, '', ok))

    def print(self) -> bool:
        width = max(len(r[0]) for r in self.rows)
        print(f'{"output":<{width}}  {"max abs err":>12}  {"rel err":>10}  result')
        for name, abs_err, rel, ok in self.rows:
            print(f'{name:<{width}}  {abs_err:>12}  {rel:>10}  {"ok" if ok else "FAIL"}')
        failed = [r[0] for r in self.rows if not r[3]]
        print(f'{len(self.rows) - len(failed)} of {len(self.rows)} checks passed'
              + (f'; failed: {failed}' if failed else ''))
        return not failed


def build_model(fixture: str, device: str):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import fiber_mmdet  # noqa: F401
    from fiber_mmdet.utils.fiber_checkpoint import load_converted_state_dict, load_fiber_checkpoint
    from fiber_mmdet.utils.reference_config import model_cfg_from_reference
    register_all_modules(init_default_scope=True)
    with open(osp.join(fixture, 'config.json')) as f:
        ref_cfg = json.load(f)
    model = MODELS.build(model_cfg_from_reference(ref_cfg))
    converted = load_fiber_checkpoint(osp.join(fixture, 'checkpoint.pth'))
    if converted.version != ref_cfg['fusion_version']:
        raise ValueError(f'checkpoint looks like {converted.version}, config.json says {ref_cfg["fusion_version"]}')
    load_converted_state_dict(model, converted.state_dict)
    return model.to(device).eval(), ref_cfg


def img_metas(sizes_hw, padded_hw) -> List[dict]:
    return [dict(img_shape=tuple(hw), ori_shape=tuple(hw), pad_shape=tuple(padded_hw),
                 batch_input_shape=tuple(padded_hw), scale_factor=(1., 1.)) for hw in sizes_hw]


@torch.no_grad()
def run_forward(model, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    lm = model.language_model
    state = model.backbone.forward_image_only(images)
    text_pre = lm.forward_text_only(input_ids, attention_mask)

    def text_layer(step, hidden, image_tokens):
        return lm.forward_fused_layer(step, hidden, attention_mask, image_tokens)

    stages, text = model.backbone.forward_fused(state, text_pre, attention_mask, text_layer)
    text = lm.forward_after_fusion(text, attention_mask)
    language = lm.language_dict(text, attention_mask)
    fpn = model.neck(stages)
    logits, bbox_reg, centerness = model.bbox_head(fpn, language)
    return dict(swin_stages=stages, text_hidden_pre_fusion=text_pre, text_hidden=language['hidden'],
                text_embedded=language['embedded'], language=language, fpn=fpn, bbox_reg=bbox_reg,
                centerness=centerness, dot_product_logits=logits)


def reference_anchors(model, fpn, device) -> List[torch.Tensor]:
    """Our anchors in the original's inclusive-pixel form (x2 - 1, y2 - 1)."""
    anchors = model.bbox_head.prior_generator.grid_priors([f.shape[-2:] for f in fpn], device=device)
    out = []
    for a in anchors:
        a = a.clone()
        a[:, 2:] -= 1
        out.append(a)
    return out


def compare_features(report: Report, prefix: str, ours: dict, ref: dict, keys,
                     rtol: float = FEATURE_RTOL) -> None:
    """Rows for each of ``keys`` found in ``ref``: a tensor, or one row per level of a list plus a failed row
    if the level counts differ."""
    for key in keys:
        if key not in ref:
            continue
        o, r = ours[key], ref[key]
        if isinstance(r, (list, tuple)):
            for level, (ol, rl) in enumerate(zip(o, r)):
                report.tensor(f'{prefix}{key}[{level}]', ol, rl, rtol=rtol)
            if len(o) != len(r):
                report.exact(f'{prefix}{key} levels', False, f'{len(o)} vs {len(r)}')
        else:
            report.tensor(f'{prefix}{key}', o, r, rtol=rtol)


def compare_detections(report: Report, name: str, ours: InstanceData, ref: dict) -> None:
    o_scores, order = ours.scores.double().sort(descending=True)
    o_boxes, o_labels = ours.bboxes.double()[order], ours.labels[order] + 1  # ours 0-based
    r_scores, r_order = ref['scores'].double().sort(descending=True)
    r_boxes, r_labels = ref['boxes'].double()[r_order], ref['labels'][r_order]
    if len(o_scores) != len(r_scores):
        report.exact(f'{name} count', False, f'{len(o_scores)} vs {len(r_scores)}')
        return
    labels_ok = bool((o_labels.cpu() == r_labels).all())
    box_err = (o_boxes.cpu() - r_boxes).abs().max().item() if len(r_boxes) else 0.
    score_err = (o_scores.cpu() - r_scores).abs().max().item() if len(r_scores) else 0.
    report.exact(f'{name} (n={len(r_scores)}) labels', labels_ok)
    report.exact(f'{name} boxes', box_err <= BOX_ATOL, f'{box_err:.3e} px')
    report.exact(f'{name} scores', score_err <= SCORE_ATOL, f'{score_err:.3e}')


def predict(model, out: dict, sizes_hw, padded_hw, label_to_tokens) -> List[InstanceData]:
    metas = img_metas(sizes_hw, padded_hw)
    for meta, l2t in zip(metas, label_to_tokens):
        meta['token_positive_map'] = {int(k): list(v) for k, v in l2t.items()}
    logits, bbox_reg, ctr = out['dot_product_logits'], out['bbox_reg'], out['centerness']
    return model.bbox_head.predict_by_feat(
        logits, bbox_reg, ctr, batch_img_metas=metas,
        batch_token_positive_maps=[m['token_positive_map'] for m in metas], rescale=False)


def check_fixture(fixture: str, device: str = 'cpu') -> bool:
    precision = disable_tf32(device)
    if precision:
        print(precision)
    torch.manual_seed(0)
    model, ref_cfg = build_model(fixture, device)
    inputs = torch.load(osp.join(fixture, 'inputs.pth'), map_location='cpu', weights_only=True)
    ref = torch.load(osp.join(fixture, 'outputs.pth'), map_location='cpu', weights_only=True)
    report = Report()
    ids, mask = inputs['input_ids'].to(device), inputs['attention_mask'].to(device)
    images = inputs['images_padded'].to(device)
    sizes = [list(s) for s in inputs['image_sizes']]
    padded = list(images.shape[-2:])

    out = run_forward(model, images, ids, mask)
    compare_features(report, '', out, ref, ['swin_stages', 'fpn', 'text_hidden_pre_fusion', 'text_hidden',
                                            'text_embedded', 'bbox_reg', 'centerness', 'dot_product_logits'])
    anchors = reference_anchors(model, out['fpn'], device)
    for level, a in enumerate(anchors):
        for img in range(len(sizes)):
            report.tensor(f'anchors[{img}][{level}]', a, ref['anchors'][img][level], rtol=0.)

    # training-mode targets and losses (all randomness is off in the fixtures)
    head = model.bbox_head
    metas = img_metas(sizes, padded)
    gts = []
    for img in range(len(sizes)):
        gt = InstanceData(bboxes=inputs['gt_boxes'][img].to(device),
                          labels=inputs['gt_labels'][img].to(device) - 1,
                          positive_maps=inputs['positive_map_per_image'][img].to(device))
        gts.append(gt)
    with torch.no_grad():
        head.text_masks = mask
        losses = head.loss_by_feat(out['dot_product_logits'], out['bbox_reg'], out['centerness'], gts, metas)
    names = dict(loss_cls='loss_dot_product_token', loss_bbox='loss_reg', loss_centerness='loss_centerness')
    for ours_key, ref_key in names.items():
        report.tensor(f'loss {ref_key}', losses[ours_key].reshape(1), ref['losses'][ref_key].reshape(1),
                      rtol=LOSS_RTOL)
    flat = torch.cat(anchors)
    flat_mmdet = flat.clone()
    flat_mmdet[:, 2:] += 1
    level_sizes = [len(a) for a in anchors]
    for img, gt in enumerate(gts):
        targets = head._get_targets_single(flat_mmdet, None, level_sizes, gt, metas[img])
        sampling = targets[-1]
        r = ref['atss'][img]
        pos = sampling.pos_inds.cpu()
        order = pos.argsort()
        pos = pos[order]
        r_order = r['pos_inds'].argsort()
        report.exact(f'atss[{img}] positives', torch.equal(pos, r['pos_inds'][r_order].long()),
                     f'{len(pos)} vs {len(r["pos_inds"])}')
        gt_inds = sampling.pos_assigned_gt_inds.cpu()[order]
        report.exact(f'atss[{img}] matched gt', torch.equal(gt_inds, r['pos_gt_inds'][r_order].long()))
        pos_anchors = flat[sampling.pos_inds][order]
        pos_gt = gt.bboxes[gt_inds.to(device)]
        enc_anchors = pos_anchors.clone()
        enc_anchors[:, 2:] += 1
        report.tensor(f'atss[{img}] reg targets', head.bbox_coder.encode(enc_anchors, pos_gt),
                      r['pos_reg_targets'][r_order], rtol=TARGET_RTOL)
        report.tensor(f'atss[{img}] centerness targets', head.centerness_target(pos_anchors, pos_gt),
                      r['pos_centerness_targets'][r_order], rtol=TARGET_RTOL)

    for img, det in enumerate(predict(model, out, sizes, padded, inputs['label_to_tokens'])):
        compare_detections(report, f'detections batch[{img}]', det, ref['detections'][img])

    # each image alone (padded only to its own multiple of 32)
    for img, image in enumerate(inputs['images']):
        single = run_forward(model, image[None].to(device), ids[img:img + 1], mask[img:img + 1])
        r = ref['single_image'][img]
        compare_features(report, f'single[{img}].', single, r,
                         ['fpn', 'text_hidden_pre_fusion', 'text_hidden', 'text_embedded', 'bbox_reg', 'centerness',
                          'dot_product_logits'])
        single_anchors = reference_anchors(model, single['fpn'], device)
        for level, a in enumerate(single_anchors):
            report.tensor(f'single[{img}].anchors[{level}]', a, r['anchors'][level], rtol=0.)
        det = predict(model, single, [sizes[img]], list(image.shape[-2:]), [inputs['label_to_tokens'][img]])[0]
        compare_detections(report, f'detections single[{img}]', det, r['detections'])
    print(f'fixture: {fixture} ({ref_cfg["fusion_version"]})')
    return report.print()


def main() -> int:
    parser = argparse.ArgumentParser(description='Compare fiber_mmdet with reference FIBER outputs')
    parser.add_argument('fixture', help='fixture directory (config.json, checkpoint.pth, inputs.pth, outputs.pth)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    for name in ('config.json', 'checkpoint.pth', 'inputs.pth', 'outputs.pth'):
        if not osp.isfile(osp.join(args.fixture, name)):
            print(f'{args.fixture}: missing {name}', file=sys.stderr)
            return 2
    return 0 if check_fixture(args.fixture, args.device) else 1


if __name__ == '__main__':
    sys.exit(main())
