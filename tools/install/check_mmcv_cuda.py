"""Check an mmcv build for the CUDA ops FIBER calls: compiled with CUDA, and, on a GPU, equal to the CPU ops.

Exit status 0 when mmcv's extension reports a CUDA version and (where a GPU is visible) NMS and the
modulated deformable convolution give the CPU results on the GPU; 1 otherwise, with the reason.

Usage: ``python tools/install/check_mmcv_cuda.py`` (``tools/install/build_mmcv_cuda.sh`` runs it after a build).
"""
import argparse
import sys
from typing import List, Optional

import torch


def compare_nms(device: str) -> str:
    """NMS on ``device`` vs CPU for 300 random boxes (N, 4) in a 100 px square; returns a summary."""
    from mmcv.ops import nms
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 80
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 20], dim=1)
    scores = torch.rand(300, generator=g)
    _, keep_cpu = nms(boxes, scores, iou_threshold=0.5)
    _, keep_dev = nms(boxes.to(device), scores.to(device), iou_threshold=0.5)
    if not torch.equal(keep_cpu, keep_dev.cpu()):
        raise AssertionError(f'nms keeps {keep_dev.numel()} boxes on {device}, {keep_cpu.numel()} on cpu')
    return f'nms: {keep_cpu.numel()} of 300 boxes kept on both'


def compare_deform_conv(device: str) -> str:
    """``ModulatedDeformConv2d`` forward and input/offset/weight gradients, ``device`` vs CPU (float64)."""
    from mmcv.ops import modulated_deform_conv2d
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 12, 12, generator=g, dtype=torch.float64)
    offset = torch.randn(2, 18, 12, 12, generator=g, dtype=torch.float64) * 2  # (N, 2*kh*kw, H, W)
    mask = torch.rand(2, 9, 12, 12, generator=g, dtype=torch.float64)  # (N, kh*kw, H, W)
    weight = torch.randn(4, 8, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    results = {}
    for dev in ('cpu', device):
        leaves = [t.to(dev).requires_grad_() for t in (x, offset, mask, weight, bias)]
        out = modulated_deform_conv2d(*leaves, 1, 1, 1, 1, 1)  # stride, padding, dilation, groups, deform groups
        out.square().sum().backward()
        results[dev] = [out.detach().cpu()] + [t.grad.cpu() for t in leaves]
    names = ('output', 'grad x', 'grad offset', 'grad mask', 'grad weight', 'grad bias')
    worst = 0.0
    for name, a, b in zip(names, results['cpu'], results[device]):
        err = ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
        if err > 1e-6:
            raise AssertionError(f'modulated deform conv {name}: relative error {err:.2e} between {device} and cpu')
        worst = max(worst, err)
    return f'modulated deform conv: output and 5 gradients equal to cpu (worst relative error {worst:.1e})'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check that mmcv's ops were built with CUDA and, when a GPU is visible, that NMS and the "
        'modulated deformable convolution (forward and its five gradients, float64) give the CPU results on '
        'the GPU. Exit status 0 when they do (or no GPU is visible), 1 otherwise, with the reason.')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    parse_args(argv)  # --help prints the description and exits before mmcv is imported
    from mmcv.ops import get_compiling_cuda_version
    built_with = get_compiling_cuda_version()
    if built_with == 'not available':
        print('mmcv was built without CUDA (FORCE_CUDA=0 or no nvcc); its ops run on CPU only', file=sys.stderr)
        return 1
    print(f'mmcv ops built with CUDA {built_with}; torch {torch.__version__} (CUDA {torch.version.cuda})')
    if not torch.cuda.is_available():
        print('no GPU visible: the CUDA kernels were built but not run')
        return 0
    try:
        print(compare_nms('cuda'))
        print(compare_deform_conv('cuda'))
    except (AssertionError, RuntimeError) as e:  # RuntimeError: e.g. "no kernel image is available" (wrong arch)
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
