"""ONNX Runtime against PyTorch for one FIBER, side by side in one process: export time, seconds per image for the
free-text graph and a fixed-vocabulary graph, the detections of each checked against PyTorch's, and the cost of
the runtime's post-processing (class-wise NMS in numpy) against ONNX's NonMaxSuppression operator.

Usage:
    python tools/analysis_tools/benchmark_onnx.py [CONFIG] [--sizes 512x512 800x1333] [--threads 2]
        [--repeat 3] [--text-config roberta-base|none] [--tokenizer DIR] [--prompt "person. car. dog"]
        [--providers CPUExecutionProvider] [--device cpu] [--work-dir DIR] [--json OUT]

CONFIG (default: FIBER-B zero-shot, ``configs/coco/fiber_b_coco_zero_shot.py``) is built with random weights and
the head's prior bias set to 0 so that every anchor scores about 0.5 and hundreds of boxes reach NMS (with the
trained prior, random weights return none). Without ``--tokenizer`` a small RoBERTa-style tokenizer is trained in
``--work-dir`` (the prompts are still padded to the model's 256 tokens, so the cost is FIBER-B's). Each size runs
a random normalised image of that size; the three ways run in turn, ``--repeat`` times after a warm-up, and the
median is reported. ``parity`` is ONNX Runtime's detections against PyTorch's: all paired (same label, box within
0.5 px, score within 1e-3) and the largest differences.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import ROBERTA_BASE  # noqa: E402

DEFAULT_CONFIG = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs', 'coco',
                          'fiber_b_coco_zero_shot.py')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='ONNX Runtime against PyTorch for one FIBER')
    p.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    p.add_argument('--sizes', nargs='+', default=['512x512', '800x1333'], help='image sizes HxW')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--text-config', choices=['roberta-base', 'none'], default='roberta-base')
    p.add_argument('--tokenizer', default=None, help='a RoBERTa-style tokenizer directory')
    p.add_argument('--prompt', default='person. car. dog', help="class names joined by '. '")
    p.add_argument('--providers', nargs='+', default=['CPUExecutionProvider'])
    p.add_argument('--provider-label', default=None, help='name of the ONNX Runtime rows (default: the provider)')
    p.add_argument('--device', default='cpu', help='where PyTorch runs')
    p.add_argument('--precision', choices=['fp32', 'fp16'], default='fp32',
                   help='fp16: TensorRT builds float16 engines (needs TensorrtExecutionProvider) and PyTorch runs '
                   'under float16 autocast')
    p.add_argument('--reuse-exports', action='store_true', help='keep the graphs already in --work-dir')
    p.add_argument('--work-dir', default='work_dirs/benchmark_onnx')
    p.add_argument('--json', default=None)
    return p.parse_args(argv)


def build(args: argparse.Namespace):
    """(cfg, model) with random weights, prior bias 0, on ``--device``."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import fiber_mmdet  # noqa: F401  (registers fiber_mmdet's modules)
    from fiber_mmdet.utils import train_roberta_tokenizer
    register_all_modules()
    cfg = Config.fromfile(args.config)
    lm = cfg.model.language_model
    if args.text_config == 'roberta-base':
        lm.update(name=None, config=ROBERTA_BASE, load_pretrained=False)
    tokenizer = args.tokenizer
    if tokenizer is None and args.text_config == 'roberta-base':
        tokenizer = osp.join(args.work_dir, 'tokenizer')
        if not osp.isdir(tokenizer):
            words = args.prompt.replace('.', ' ').split() + ['a', 'man', 'riding', 'horse', 'the', 'left', 'of']
            train_roberta_tokenizer([' '.join(words)] * 20, tokenizer, vocab_size=300)
    if tokenizer:
        lm.tokenizer = tokenizer
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)  # random weights from the constructors, as benchmark.py
    with torch.no_grad():
        model.bbox_head.head.bias0.zero_()
    return cfg, model.to(args.device).eval()


def median_seconds(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    return round_robin_seconds({'fn': fn}, repeat, sync)['fn']


def round_robin_seconds(fns: Dict[str, Callable[[], object]], repeat: int,
                        sync: Callable[[], None]) -> Dict[str, float]:
    """Median seconds of each function after a warm-up, the functions called in turn on every round so that a
    change in the machine's speed affects them alike."""
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for rep in range(repeat + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            if rep:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def nms_costs(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float, offset: int,
              repeat: int) -> Dict[str, float]:
    """Milliseconds of the runtime's class-wise NMS and of ONNX's NonMaxSuppression on the same candidates."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from fiber_mmdet.runtime.postprocess import batched_nms
    num_labels = int(labels.max()) + 1 if labels.size else 1
    per_label = np.full((1, num_labels, len(scores)), -1.0, dtype=np.float32)  # other labels' boxes never kept
    per_label[0, labels, np.arange(len(scores))] = scores
    graph = helper.make_graph(
        [helper.make_node('NonMaxSuppression', ['boxes', 'scores', 'max', 'iou', 'thr'], ['keep'])], 'nms',
        [helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [1, None, 4]),
         helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, None, None])],
        [helper.make_tensor_value_info('keep', TensorProto.INT64, [None, 3])],
        [helper.make_tensor('max', TensorProto.INT64, [1], [len(scores)]),
         helper.make_tensor('iou', TensorProto.FLOAT, [1], [iou]),
         helper.make_tensor('thr', TensorProto.FLOAT, [1], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    feed = dict(boxes=boxes[None], scores=per_label)
    numpy_ms = 1000 * median_seconds(lambda: batched_nms(boxes, scores, labels, iou, offset), repeat, lambda: None)
    onnx_ms = 1000 * median_seconds(lambda: session.run(None, feed), repeat, lambda: None)
    kept_numpy = len(batched_nms(boxes, scores, labels, iou, offset))
    kept_onnx = len(session.run(None, feed)[0])
    return dict(candidates=int(len(scores)), nms_numpy_ms=numpy_ms, nms_onnx_op_ms=onnx_ms, kept_numpy=kept_numpy,
                kept_onnx_op=kept_onnx)


def run_size(args, model, onnx_models: Dict[str, object], size: List[int]) -> Dict[str, dict]:
    from mmdet.structures import DetDataSample

    from fiber_mmdet.runtime.compare import compare_detections
    from fiber_mmdet.runtime.postprocess import class_scores_from_tokens
    from fiber_mmdet.runtime.preprocess import Prepared
    H, W = size
    pad_h, pad_w = -(-H // 32) * 32, -(-W // 32) * 32
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(1, 3, pad_h, pad_w)
    image[:, :, :H, :W] = torch.randn(1, 3, H, W, generator=g)
    names = [n for n in args.prompt.split('. ') if n]
    meta = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(pad_h, pad_w), batch_input_shape=(pad_h, pad_w),
                scale_factor=(1., 1.))
    device = args.device
    sync = (lambda: torch.cuda.synchronize()) if device.startswith('cuda') else (lambda: None)

    def pytorch() -> dict:
        sample = DetDataSample(metainfo=meta)
        sample.text = names
        with torch.no_grad(), torch.autocast(device.split(':')[0], torch.float16, enabled=args.precision == 'fp16'):
            pred = model.predict(image.to(device), [sample])[0].pred_instances
        return dict(bboxes=pred.bboxes.tolist(), scores=pred.scores.tolist(), labels=pred.labels.tolist(),
                    label_names=list(pred.label_names))

    prepared = [Prepared(image[0].numpy(), (H, W), (1.0, 1.0), (H, W))]
    calls = {'pytorch': pytorch}
    for kind, runtime in onnx_models.items():
        if runtime.meta.get('fixed_shape') and list(runtime.meta['fixed_shape']) != [pad_h, pad_w]:
            continue
        prompts = None if runtime.fixed_vocabulary else [runtime.planner.plan(names)]
        calls[kind] = (lambda r, p: lambda: r.predict(prepared, p)[0])(runtime, prompts)
    seconds = round_robin_seconds(calls, args.repeat, sync)
    expected = pytorch()
    rows = {'pytorch': dict(seconds=seconds['pytorch'], detections=len(expected['scores']))}
    for kind, call in calls.items():
        if kind == 'pytorch':
            continue
        comparison = compare_detections(expected, call())
        rows[kind] = dict(seconds=seconds[kind], vs_pytorch=seconds[kind] / seconds['pytorch'],
                          detections=len(expected['scores']), parity=comparison.equal,
                          max_box_diff_px=comparison.max_box_diff, max_score_diff=comparison.max_score_diff)
    free = onnx_models.get('onnx_free_text')
    if free is not None:  # post-processing cost on this image's real candidates
        ids, mask = free.encode([free.planner.plan(names)[0].caption])
        boxes, tokens, ctr, _ = free.session.run(None, dict(image=image.numpy(), img_hw=np.array([[H, W]]),
                                                             input_ids=ids, attention_mask=mask))
        label_map = free.planner.plan(names)[0].label_to_tokens
        scores = class_scores_from_tokens(tokens[0], label_map)
        anchor, label = np.nonzero(scores > free.meta['postprocess']['score_thr'])
        top = np.argsort(-scores[anchor, label] * ctr[0][anchor], kind='stable')[:1000]
        anchor, label = anchor[top], label[top]
        rows['nms'] = nms_costs(boxes[0][anchor], np.sqrt(scores[anchor, label] * ctr[0][anchor]), label,
                                free.meta['postprocess']['iou_threshold'], free.meta['postprocess']['nms_offset'],
                                args.repeat)
    return rows


def provider_settings(args: argparse.Namespace) -> list:
    """``--providers`` for onnxruntime; TensorRT with fp16 engines under ``--precision fp16`` and an engine cache in
    ``--work-dir`` (building FIBER-B's engines takes minutes)."""
    providers = []
    for name in args.providers:
        if name == 'TensorrtExecutionProvider':
            providers.append((name, dict(trt_fp16_enable=args.precision == 'fp16', trt_engine_cache_enable=True,
                                         trt_engine_cache_path=osp.join(args.work_dir, 'trt_cache'))))
        else:
            providers.append(name)
    return providers


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.precision == 'fp16' and 'TensorrtExecutionProvider' not in args.providers:
        raise SystemExit('--precision fp16 runs float16 TensorRT engines: add TensorrtExecutionProvider to --providers '
                         '(the exported graph itself is float32)')
    torch.set_num_threads(args.threads)
    os.makedirs(args.work_dir, exist_ok=True)
    from fiber_mmdet.deployment import export_model
    from fiber_mmdet.runtime import ONNXFIBER
    cfg, model = build(args)
    exports = {}
    for kind, texts in (('onnx_free_text', None), ('onnx_fixed_vocabulary', args.prompt.replace('. ', ' . '))):
        folder = osp.join(args.work_dir, kind)
        if args.reuse_exports and osp.isfile(osp.join(folder, 'fiber.onnx')):
            exports[kind] = 0.0
            continue
        start = time.perf_counter()
        export_model(model, cfg, folder, texts=texts)
        exports[kind] = time.perf_counter() - start
    model = model.to(args.device)
    label = args.provider_label or args.providers[0].replace('ExecutionProvider', '')
    providers = provider_settings(args)
    runtimes = {}
    for kind in list(exports):
        folder = osp.join(args.work_dir, kind)
        start = time.perf_counter()
        runtimes[kind] = ONNXFIBER(folder, providers=providers, threads=args.threads)
        exports[kind + '_session_s'] = time.perf_counter() - start
    results = dict(config=args.config, threads=args.threads, providers=args.providers, device=args.device,
                   precision=args.precision,
                   params=sum(p.numel() for p in model.parameters()), export_seconds=exports, sizes={})
    print(f'config: {args.config}  params: {results["params"]:,}  threads: {args.threads}  onnxruntime: {label}  '
          f'pytorch: {args.device}')
    print('export + session seconds: ' + ', '.join(f'{k} {v:.0f}' for k, v in exports.items()))
    for size in args.sizes:
        hw = [int(v) for v in size.lower().split('x')]
        rows = run_size(args, model, runtimes, hw)
        results['sizes'][size] = rows
        for kind, row in rows.items():
            if kind == 'nms':
                print(f'{size:>9}  NMS of {row["candidates"]} candidates: runtime (numpy) {row["nms_numpy_ms"]:.2f} '
                      f'ms, ONNX NonMaxSuppression {row["nms_onnx_op_ms"]:.2f} ms')
            elif kind == 'pytorch':
                print(f'{size:>9}  {"pytorch":<24} {row["seconds"]:8.3f} s')
            else:
                print(f'{size:>9}  {kind + " (" + label + ")":<24} {row["seconds"]:8.3f} s  {row["vs_pytorch"]:.2f}x  '
                      f'parity {row["parity"]} ({row["detections"]} detections, boxes {row["max_box_diff_px"]:.1e} px, '
                      f'scores {row["max_score_diff"]:.1e})')
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
