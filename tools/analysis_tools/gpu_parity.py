"""A small FIBER whose float32 CPU outputs are stored in the repository, to check another device against them.

``tools/analysis_tools/fixtures/gpu_parity/`` (written by ``make_gpu_parity_fixture.py``) holds:

* ``model.json``: the model config (a FIBER with the structure of FIBER-B: fusion in the last block of stage 2
  and the first of stage 3, FPN, a DyHead block with deformable convolutions; 0.25 M parameters, 1.2 MB);
* ``tokenizer/``: the RoBERTa-style tokenizer the config reads (400 tokens, trained as the tests train theirs);
* ``weights.pth``: its float32 weights (drawn from a fixed seed, then frozen in the file: a torch or transformers
  release may initialise differently);
* ``data.pth``: the inputs (two images, 96 x 128 and 80 x 112 in a 96 x 128 batch, class-name prompts and
  ground-truth boxes) and the CPU float32 outputs: FPN levels, text states, raw head outputs, the training
  losses and the detections of ``model.predict`` (score threshold 0.012: random weights score the boxes
  0.009-0.017, so that hundreds of candidates reach NMS; 18 and 32 detections come out).

The suite checks that the CPU still reproduces ``data.pth`` (the CPU itself is checked against the original
FIBER by ``reference_parity.py``); ``gpu_check.py`` checks a GPU against it, so the GPU is tied to the original
through the CPU without the 56 MiB reference fixtures.
"""
import json
import os.path as osp
import sys
from typing import Dict, List

import torch
from torch import Tensor

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from reference_parity import Report, compare_features, img_metas  # noqa: E402

FIXTURE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'fixtures', 'gpu_parity')
CLASSES = ['red circle', 'blue square', 'green triangle', 'yellow diamond']
SIZES = [(96, 128), (80, 112)]  # (H, W) of the two images; the batch is padded to the first
# Tolerances of another device against the stored CPU float32 outputs (TF32 off): relative to each tensor's
# largest magnitude, as reference_parity.py; boxes in pixels.
FEATURE_RTOL = 1e-4
LOSS_RTOL = 1e-4
BOX_ATOL = 1e-2
SCORE_ATOL = 1e-4


def model_config(tokenizer_dir: str) -> dict:
    """The fixture's model dict: ``configs/_base_/models/fiber_b.py`` shrunk, deterministic in training mode
    (no dropout, drop path or DropBlock) so that the losses can be compared."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
                                   '_base_', 'models', 'fiber_b.py'))
    max_tokens = 32
    model = cfg.model.to_dict()
    model['backbone'].update(
        arch=dict(embed_dims=8, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4]), window_size=7, text_dims=32,
        fusion_blocks=[(2, 1), (3, 0)], drop_path_rate=0.0)
    model['language_model'].update(
        name=None, tokenizer=tokenizer_dir, max_tokens=max_tokens, fused_layers=[1, 2], image_dims=[32, 64],
        config=dict(vocab_size=400, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, hidden_act='gelu', layer_norm_eps=1e-5,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02))
    model['neck'].update(in_channels=[16, 32, 64], out_channels=32, plugin=dict(type='SpatialDropBlock',
                                                                               drop_prob=0.0, block_size=3))
    model['bbox_head'].update(in_channels=32, feat_channels=32, lang_dim=32, num_tokens=max_tokens,
                              num_dyhead_blocks=1, use_dcn=True)
    model['test_cfg'].update(score_thr=0.012, nms_pre=200, max_per_img=50)
    return model


def build_model(fixture_dir: str = FIXTURE_DIR, device: str = 'cpu', weights: bool = True):
    """The fixture's model on ``device`` in eval mode, with its stored weights (``weights=False``: as built)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import fiber_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)
    with open(osp.join(fixture_dir, 'model.json')) as f:
        cfg = json.load(f)
    cfg['language_model']['tokenizer'] = osp.join(fixture_dir, 'tokenizer')
    model = MODELS.build(cfg)
    if weights:
        state = torch.load(osp.join(fixture_dir, 'weights.pth'), map_location='cpu', weights_only=True)
        model.load_state_dict(state)
    return model.to(device).eval()


def make_inputs(seed: int = 0) -> dict:
    """Two normalised images in one (2, 3, 96, 128) batch (the second 80 x 112, zero-padded), and per image
    two ground-truth boxes (xyxy pixels) with labels into :data:`CLASSES`."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(2, 3, *SIZES[0])
    for i, (h, w) in enumerate(SIZES):
        images[i, :, :h, :w] = torch.randn(3, h, w, generator=g)
    boxes = [torch.tensor([[10., 12., 50., 60.], [60., 30., 120., 90.]]),
             torch.tensor([[5., 5., 40., 35.], [50., 20., 100., 75.]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1, 3])]
    return dict(images=images, sizes=[list(s) for s in SIZES], gt_boxes=boxes, gt_labels=labels)


def data_samples(inputs: dict, device: str, with_gt: bool) -> list:
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    padded = tuple(inputs['images'].shape[-2:])
    samples = []
    for i, meta in enumerate(img_metas(inputs['sizes'], padded)):
        s = DetDataSample(metainfo=meta)
        s.text = list(CLASSES)
        if with_gt:
            s.gt_instances = InstanceData(bboxes=inputs['gt_boxes'][i].to(device),
                                          labels=inputs['gt_labels'][i].to(device))
        samples.append(s)
    return samples


def run_outputs(model, inputs: dict, device: str) -> Dict[str, object]:
    """Everything compared, as CPU float32 tensors: ``fpn`` (levels), ``text_hidden`` (2, T, 32), raw head
    outputs (per level), ``losses`` (training mode, same weights) and ``detections`` (``model.predict``)."""
    images = inputs['images'].to(device)
    out: Dict[str, object] = {}
    model.eval()
    with torch.no_grad():
        samples = data_samples(inputs, device, with_gt=False)
        caption = model.test_prompts(samples[0])[0].caption
        tok = model.language_model.tokenize([caption] * len(samples), device=device)
        visual, language = model.extract_feat(images, tok['input_ids'], tok['attention_mask'])
        logits, bbox_reg, centerness = model.bbox_head(visual, language)
        out['fpn'] = [v.float().cpu() for v in visual]
        out['text_hidden'] = language['hidden'].float().cpu()
        out['dot_product_logits'] = [t.float().cpu() for t in logits]
        out['bbox_reg'] = [t.float().cpu() for t in bbox_reg]
        out['centerness'] = [t.float().cpu() for t in centerness]
        preds = model.predict(images, samples, rescale=False)
        out['detections'] = [dict(boxes=p.pred_instances.bboxes.float().cpu(),
                                  scores=p.pred_instances.scores.float().cpu(),
                                  labels=p.pred_instances.labels.cpu()) for p in preds]
        model.train()
        losses = model.loss(images, data_samples(inputs, device, with_gt=True))
        model.eval()
        out['losses'] = {k: v.detach().float().cpu() for k, v in losses.items() if k.startswith('loss')}
    return out


def match_detections(ours: dict, ref: dict, box_atol: float, score_atol: float) -> Dict[str, float]:
    """Pairs each reference detection with the unused detection of ``ours`` of the same label whose box is
    closest (max coordinate difference); NMS keeps the same boxes in whatever order, so the sets are compared.

    Returns:
        dict: ``n_ours``, ``n_ref``, ``unmatched`` (reference detections without a partner within
        ``box_atol`` px and ``score_atol``), ``box_err`` / ``score_err`` (worst over the matched pairs).
    """
    used = torch.zeros(len(ours['scores']), dtype=torch.bool)
    unmatched, box_err, score_err = 0, 0., 0.
    for box, score, label in zip(ref['boxes'].double(), ref['scores'].double(), ref['labels']):
        candidates = (ours['labels'] == label) & ~used
        if not candidates.any():
            unmatched += 1
            continue
        dist = (ours['boxes'].double() - box).abs().max(dim=1).values
        dist[~candidates] = float('inf')
        j = int(dist.argmin())
        s_err = abs(float(ours['scores'][j]) - float(score))
        if dist[j] > box_atol or s_err > score_atol:
            unmatched += 1
            continue
        used[j] = True
        box_err, score_err = max(box_err, float(dist[j])), max(score_err, s_err)
    return dict(n_ours=len(ours['scores']), n_ref=len(ref['scores']), unmatched=unmatched, box_err=box_err,
                score_err=score_err)


def compare(ours: dict, ref: dict, feature_rtol: float = FEATURE_RTOL, loss_rtol: float = LOSS_RTOL,
            box_atol: float = BOX_ATOL, score_atol: float = SCORE_ATOL) -> Report:
    """Every stored output of ``ref`` against ``ours`` (from :func:`run_outputs`), as report rows."""
    report = Report()
    compare_features(report, '', ours, ref, ('fpn', 'dot_product_logits', 'bbox_reg', 'centerness', 'text_hidden'),
                     rtol=feature_rtol)
    for name, r in ref['losses'].items():
        report.tensor(name, ours['losses'][name].reshape(1), r.reshape(1), rtol=loss_rtol)
    for i, (o, r) in enumerate(zip(ours['detections'], ref['detections'])):
        m = match_detections(o, r, box_atol, score_atol)
        report.exact(f'detections[{i}] (n={m["n_ref"]})', m['n_ours'] == m['n_ref'] and m['unmatched'] == 0,
                     f'{m["n_ours"]} vs {m["n_ref"]}, {m["unmatched"]} unmatched, box {m["box_err"]:.1e} px, '
                     f'score {m["score_err"]:.1e}')
    return report


def worst_relative_error(report: Report) -> float:
    """The largest relative error among the tensor rows of ``report``."""
    rel = [float(r[2]) for r in report.rows if r[2] not in ('', None)]
    return max(rel) if rel else 0.


def load_reference(fixture_dir: str = FIXTURE_DIR) -> dict:
    return torch.load(osp.join(fixture_dir, 'data.pth'), map_location='cpu', weights_only=True)


def check(device: str, fixture_dir: str = FIXTURE_DIR, **tolerances: float) -> Report:
    """Run the fixture's model on ``device`` in float32 and compare with the stored CPU outputs
    (``tolerances``: :func:`compare`'s, default the device tolerances of this module)."""
    ref = load_reference(fixture_dir)
    model = build_model(fixture_dir, device)
    ours = run_outputs(model, ref['inputs'], device)
    return compare(ours, ref['outputs'], **tolerances)


def missing_files(fixture_dir: str = FIXTURE_DIR) -> List[str]:
    names = ['model.json', 'weights.pth', 'data.pth', 'tokenizer/vocab.json', 'tokenizer/merges.txt']
    return [n for n in names if not osp.isfile(osp.join(fixture_dir, n))]


def stable_under_noise(model, inputs: dict, reference: dict, rel: float = 1e-5, trials: int = 3) -> List[str]:
    """Problems (none: ``[]``) of the stored detections under noise of another device's size: the head outputs
    are perturbed by ``rel`` x their scale and post-processed again; every perturbation must give the same
    detections (as :func:`match_detections` compares them). Random weights score boxes alike and anchors of
    adjacent positions overlap at IoU 0.6, NMS's threshold, so an unlucky seed gives detections that depend on
    float noise; the generator then tries the next seed."""
    problems = []
    g = torch.Generator().manual_seed(1)
    padded = list(inputs['images'].shape[-2:])
    metas = img_metas(inputs['sizes'], padded)
    samples = data_samples(inputs, 'cpu', with_gt=False)
    positive_map = model.test_prompts(samples[0])[0].label_to_tokens

    def noisy(levels: List[Tensor]) -> List[Tensor]:
        return [t + torch.randn(t.shape, generator=g) * rel * t.abs().max() for t in levels]

    for trial in range(trials):
        with torch.no_grad():
            preds = model.bbox_head.predict_by_feat(
                noisy(reference['dot_product_logits']), noisy(reference['bbox_reg']),
                noisy(reference['centerness']), batch_img_metas=metas,
                batch_token_positive_maps=[positive_map] * len(metas), rescale=False)
        for i, (p, r) in enumerate(zip(preds, reference['detections'])):
            m = match_detections(dict(boxes=p.bboxes, scores=p.scores, labels=p.labels), r, BOX_ATOL, SCORE_ATOL)
            if m['n_ours'] != m['n_ref'] or m['unmatched']:
                problems.append(f'trial {trial} image {i}: {m}')
    return problems
