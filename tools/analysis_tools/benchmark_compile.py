"""torch.compile against eager mode for FIBER: graph breaks, compile time, speed, recompiles and outputs.

Usage:
    python tools/analysis_tools/benchmark_compile.py CONFIG [--size 512 512] [--batch 1] [--phases eval,train]
        [--backend inductor] [--mode default] [--dynamic] [--threads N] [--repeat 5] [--sizes H W H W ...]
        [--text-config roberta-base|none] [--tokenizer DIR] [--cfg-options K=V ...] [--json OUT]

The model and its input are benchmark.py's (random weights, one synthetic image of ``--size`` with ``--boxes``
boxes, repeated ``--batch`` times). Per phase:

* ``train``: ``model.loss`` + backward, the part of MMEngine's ``train_step`` that ``compile=True`` compiles
  into graphs (the optimizer step stays outside); ``eval``: ``model.predict``.
* ``graphs`` / ``graph_breaks``: ``torch._dynamo.explain`` of the phase's function, with the reasons of the
  breaks by place. FIBER keeps strings, target assignment and post-processing out of the graphs on purpose
  (``torch.compiler.disable``): each is one boundary, and the fused backbone, the neck and the head run as
  compiled graphs.
* ``compile_seconds``: the first compiled call (tracing and code generation, plus one run).
* ``eager_seconds`` / ``compiled_seconds``: medians of ``--repeat`` calls each, alternating.
* ``max_loss_diff`` (train) or ``max_box_diff`` / ``max_score_diff`` / ``same_labels`` (eval): compiled
  against eager on the same weights. Dropout draws other random numbers in compiled code, so compare with a
  config without dropout (``--cfg-options`` can switch it off).
* ``recompiles``: compiled calls at each of ``--sizes`` (default: two more sizes) and how many new frames each
  compiled. By default the first new size compiles again with dynamic sizes and later sizes reuse that code;
  ``--dynamic`` compiles with dynamic sizes from the start.
"""
import argparse
import collections
import json
import os
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import build, build_parser, parse_args as parse_args_of_benchmark, synchronize  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = build_parser('torch.compile against eager mode for FIBER')
    p.add_argument('--backend', default='inductor')
    p.add_argument('--mode', default=None, help='torch.compile mode (default, reduce-overhead, max-autotune)')
    p.add_argument('--dynamic', action='store_true', help='compile with dynamic sizes from the start')
    p.add_argument('--batch', type=int, default=1, help='images per call (the same image repeated)')
    p.add_argument('--sizes', type=int, nargs='+', default=None, metavar='H W',
                   help='more image sizes to call the compiled function at (default: two sizes near --size)')
    args = parse_args_of_benchmark(argv, parser=p)
    if args.sizes is not None and len(args.sizes) % 2:
        p.error('--sizes takes pairs H W')
    return args


def make_input(args: argparse.Namespace, model, size) -> tuple:
    """(images (B, 3, H', W'), B data samples) at ``size`` for ``model``, as benchmark.py builds them."""
    saved = args.size
    args.size = list(size)
    try:
        _, img, sample = build(args, model=model)
    finally:
        args.size = saved
    return img.expand(args.batch, -1, -1, -1).contiguous(), [sample.clone() for _ in range(args.batch)]


def phase_function(model, phase: str) -> Callable:
    """The function MMEngine's compile would compile for ``phase``: ``loss`` or ``predict``."""
    return model.loss if phase == 'train' else model.predict


def call(model, fn: Callable, phase: str, img, samples):
    """One call of ``fn`` as the phase makes it; returns the losses (train) or the detections (eval)."""
    samples = [s.clone() for s in samples]
    if phase == 'train':
        model.train()
        model.zero_grad(set_to_none=True)
        losses = fn(img, samples)
        sum(losses.values()).backward()
        return {k: v.detach() for k, v in losses.items()}
    model.eval()
    with torch.no_grad():
        return [s.pred_instances for s in fn(img, samples)]


def compare(phase: str, eager, compiled) -> Dict[str, float]:
    """How far the compiled outputs are from eager mode's."""
    if phase == 'train':
        return dict(max_loss_diff=max(float((eager[k] - compiled[k]).abs()) for k in eager))
    same = all(a.labels.tolist() == b.labels.tolist() for a, b in zip(eager, compiled))
    box = max(float((a.bboxes - b.bboxes).abs().max()) if len(a.bboxes) and same else 0.
              for a, b in zip(eager, compiled))
    score = max(float((a.scores - b.scores).abs().max()) if len(a.scores) and same else 0.
                for a, b in zip(eager, compiled))
    return dict(same_labels=same, detections=sum(len(a.scores) for a in eager), max_box_diff=box,
                max_score_diff=score)


def explain(model, phase: str, img, samples) -> Dict[str, object]:
    """Graphs and graph breaks of the phase's function (``torch._dynamo.explain``), breaks grouped by place."""
    fn = phase_function(model, phase)
    model.train(phase == 'train')
    with torch.set_grad_enabled(phase == 'train'):
        out = torch._dynamo.explain(fn)(img, [s.clone() for s in samples])
    places = collections.Counter()
    for reason in out.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        where = f'{frame.filename.split("site-packages/")[-1]}:{frame.lineno}' if frame else '?'
        places[f'{where}: {reason.reason.splitlines()[0][:100]}'] += 1
    torch._dynamo.reset()
    return dict(graphs=out.graph_count, graph_breaks=out.graph_break_count, ops=out.op_count,
                break_places=dict(places.most_common()))


def frames_compiled() -> int:
    from torch._dynamo.utils import counters
    return int(counters['frames']['ok'])


def run_phase(args: argparse.Namespace, phase: str) -> Dict[str, object]:
    model, _, _ = build(args)
    img, samples = make_input(args, model, args.size)
    result: Dict[str, object] = explain(model, phase, img, samples)
    eager_fn = phase_function(model, phase)
    compiled_fn = torch.compile(eager_fn, backend=args.backend, mode=args.mode, dynamic=True if args.dynamic else None)
    torch.manual_seed(0)
    reference = call(model, eager_fn, phase, img, samples)  # also the eager warm-up
    before = frames_compiled()
    start = time.perf_counter()
    torch.manual_seed(0)
    first = call(model, compiled_fn, phase, img, samples)
    synchronize(args.device)
    result['compile_seconds'] = time.perf_counter() - start
    result['frames_compiled'] = frames_compiled() - before
    result.update(compare(phase, reference, first))
    times = {'eager': [], 'compiled': []}
    for _ in range(max(args.repeat, 1)):  # alternating: drift of the machine's speed hits both alike
        for name, fn in (('eager', eager_fn), ('compiled', compiled_fn)):
            synchronize(args.device)
            t = time.perf_counter()
            call(model, fn, phase, img, samples)
            synchronize(args.device)
            times[name].append(time.perf_counter() - t)
    result['eager_seconds'] = statistics.median(times['eager'])
    result['compiled_seconds'] = statistics.median(times['compiled'])
    result['speedup'] = result['eager_seconds'] / result['compiled_seconds']
    H, W = args.size
    sizes = args.sizes or [H + 32, W - 32, H - 64, W + 64]
    result['recompiles'] = []
    for h, w in zip(sizes[0::2], sizes[1::2]):
        other_img, other_samples = make_input(args, model, (h, w))
        before = frames_compiled()
        t = time.perf_counter()
        call(model, compiled_fn, phase, other_img, other_samples)
        result['recompiles'].append(dict(size=[h, w], frames_compiled=frames_compiled() - before,
                                         seconds=time.perf_counter() - t))
    return result


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = {phase: run_phase(args, phase) for phase in args.phases}
    print(f'config: {args.config}  image: {args.size[0]}x{args.size[1]} x {args.batch}  device: {args.device}  '
          f'threads: {torch.get_num_threads()}  backend: {args.backend}  mode: {args.mode or "default"}  '
          f'dynamic: {args.dynamic}')
    for phase, r in rows.items():
        outputs = (f'max loss diff {r["max_loss_diff"]:.2e}' if phase == 'train' else
                   f'labels {"equal" if r["same_labels"] else "DIFFER"} ({r["detections"]} detections), '
                   f'max box diff {r["max_box_diff"]:.2e} px, max score diff {r["max_score_diff"]:.2e}')
        print(f'{phase}: {r["graphs"]} graphs, {r["graph_breaks"]} graph breaks; compile {r["compile_seconds"]:.1f} s; '
              f'eager {r["eager_seconds"]:.3f} s, compiled {r["compiled_seconds"]:.3f} s '
              f'({r["speedup"]:.2f}x); {outputs}')
        for place, n in r['break_places'].items():
            print(f'    break x{n}: {place}')
        for other in r['recompiles']:
            print(f'    at {other["size"][0]}x{other["size"][1]}: {other["frames_compiled"]} frame(s) compiled, '
                  f'{other["seconds"]:.1f} s')
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(dict(config=args.config, size=args.size, batch=args.batch, device=args.device,
                           threads=torch.get_num_threads(), backend=args.backend, mode=args.mode,
                           dynamic=args.dynamic, phases=rows), f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
