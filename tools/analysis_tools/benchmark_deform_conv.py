"""Time the head's deformable convolution on the CPU: mmcv's kernel against ``modulated_deform_conv2d_cpu``.

Usage:
    python tools/analysis_tools/benchmark_deform_conv.py [--preset fiber-b-512 toy] [--threads 2] [--repeat 3]

For every DyHead shape of the preset (one row per level and stride) the same
:class:`FP32ModulatedDeformConv2d` runs forward (no grad) and forward + backward (gradients for the input,
offset, mask, weight and bias, as in training), alternating mmcv's kernel and the new one (at least
``--repeat`` times, more for fast rows), and the median milliseconds and their ratio (mmcv / new) are printed
side by side, with the largest output difference. Presets:

* ``fiber-b-512``: FIBER-B at a 512x512 input, 256 channels, batch 1: stride 1 on P3..P7 (64x64 .. 4x4) and
  stride 2 from P3..P6 (the finer-level branch);
* ``toy``: the CPU toy model, 64 channels, batch 4, P3..P7 = 18x32 .. 2x2 and the stride-2 rows.

``total`` is one DyHead block's deformable convolutions (per level: itself, the finer level at stride 2 and the
coarser level at stride 1, whose cost is that level's stride-1 row).

Medians with torch 2.14.1 and mmcv 2.1.0 on a two-core CPU that other processes kept busy, mmcv ms / new ms
(mmcv / new). The ratios are the result; the absolute times depend on the load, and at two threads they mostly
measure the wait for a free core:

| threads | shape | forward | forward + backward |
|---|---|---|---|
| 1 | FIBER-B 512, one DyHead block | 1180 / 775 (1.5x) | 10838 / 2860 (3.8x) |
| 1 | FIBER-B P3 (1,256,64,64) s1 | 657 / 464 (1.4x) | 5094 / 1430 (3.6x) |
| 1 | toy, one DyHead block | 142 / 52 (2.7x) | 1529 / 238 (6.4x) |
| 2 | FIBER-B 512, one DyHead block | 1972 / 1611 (1.2x) | 13470 / 5579 (2.4x) |
| 2 | toy, one DyHead block | 613 / 254 (2.4x) | 4157 / 3122 (1.3x) |
"""
import argparse
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch

from fiber_mmdet.models.layers import FP32ModulatedDeformConv2d

# (channels, batch, level sizes P3..P7)
PRESETS: Dict[str, Tuple[int, int, List[Tuple[int, int]]]] = {
    'fiber-b-512': (256, 1, [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]),
    'toy': (64, 4, [(18, 32), (9, 16), (5, 8), (3, 4), (2, 2)]),
}


MAX_REPEAT = 50


def parse_args():
    p = argparse.ArgumentParser(description='mmcv vs fiber_mmdet deformable convolution on the CPU')
    p.add_argument('--preset', nargs='+', default=list(PRESETS), choices=list(PRESETS))
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s)')
    p.add_argument('--repeat', type=int, default=3,
                   help='least timed calls per kernel after one warm-up (more for fast rows, ~0.5 s a row)')
    return p.parse_args()


def _time(fn: Callable[[], torch.Tensor]) -> Tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1e3, out


def bench_row(layer: FP32ModulatedDeformConv2d, batch: int, size: Tuple[int, int], repeat: int) -> List[float]:
    """[mmcv fwd, new fwd, mmcv fwd+bwd, new fwd+bwd] in ms, and the max |difference| of the outputs."""
    h, w = size
    stride = layer.stride[0]
    h_out, w_out = (h - 1) // stride + 1, (w - 1) // stride + 1
    x = torch.randn(batch, layer.in_channels, h, w)
    offset = torch.randn(batch, 18, h_out, w_out) * 2
    mask = torch.rand(batch, 9, h_out, w_out)

    def forward(use_mmcv: bool) -> torch.Tensor:
        layer.use_mmcv_cpu_kernel = use_mmcv
        with torch.no_grad():
            return layer(x, offset, mask)

    def forward_backward(use_mmcv: bool) -> torch.Tensor:
        layer.use_mmcv_cpu_kernel = use_mmcv
        layer.zero_grad()
        leaves = [t.clone().requires_grad_() for t in (x, offset, mask)]
        out = layer(*leaves)
        out.sum().backward()
        return out.detach()

    times: Dict[Tuple[str, bool], List[float]] = {}
    outs = {}
    for name, fn in (('fwd', forward), ('fb', forward_backward)):
        warm_up = sum(_time(lambda: fn(use_mmcv))[0] for use_mmcv in (True, False))
        # at least ``repeat`` pairs and ~0.5 s per row, so that a fast row is not three noisy samples
        for _ in range(max(repeat, min(MAX_REPEAT, int(500 / max(warm_up, 1e-3))))):
            for use_mmcv in (True, False):  # alternating, so that load from elsewhere hits both alike
                ms, outs[use_mmcv] = _time(lambda: fn(use_mmcv))
                times.setdefault((name, use_mmcv), []).append(ms)
    med = {key: statistics.median(v) for key, v in times.items()}
    diff = (outs[True] - outs[False]).abs().max().item()
    return [med['fwd', True], med['fwd', False], med['fb', True], med['fb', False], diff]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, median of >= {args.repeat} alternating calls')
    header = (f'{"preset":12s} {"shape (B,C,H,W) / stride":28s} {"fwd mmcv":>9s} {"fwd new":>8s} {"x":>6s} '
              f'{"f+b mmcv":>9s} {"f+b new":>8s} {"x":>6s} {"max|diff|":>9s}')
    print(header)
    for preset in args.preset:
        channels, batch, levels = PRESETS[preset]
        rows = {}
        for stride in (1, 2):
            torch.manual_seed(0)
            layer = FP32ModulatedDeformConv2d(channels, channels, 3, stride=stride, padding=1)
            for level, size in enumerate(levels if stride == 1 else levels[:-1]):
                r = bench_row(layer, batch, size, args.repeat)
                rows[level, stride] = r
                shape = f'({batch},{channels},{size[0]},{size[1]}) s{stride}'
                print(f'{preset:12s} {shape:28s} {r[0]:9.1f} {r[1]:8.1f} {r[0] / r[1]:6.1f} '
                      f'{r[2]:9.1f} {r[3]:8.1f} {r[2] / r[3]:6.1f} {r[4]:9.1e}', flush=True)
        # one DyHead block: every level's own stride-1 conv, the coarser level's (stride 1 at level l + 1) and
        # the finer level's stride-2 conv (input level l - 1)
        n = len(levels)
        calls = [(l, 1) for l in range(n)] + [(l + 1, 1) for l in range(n - 1)] + [(l, 2) for l in range(n - 1)]
        tot = [sum(rows[c][i] for c in calls) for i in range(4)]
        print(f'{preset:12s} {"total (one DyHead block)":28s} {tot[0]:9.1f} {tot[1]:8.1f} {tot[0] / tot[1]:6.1f} '
              f'{tot[2]:9.1f} {tot[3]:8.1f} {tot[2] / tot[3]:6.1f}', flush=True)


if __name__ == '__main__':
    main()
