"""tools/analysis_tools/benchmark.py: the table and JSON of a real (tiny FIBER) run, and its FLOP count."""
import json
import subprocess
import sys

import torch

from .conftest import REPO_ROOT, TOOLS

sys.path.insert(0, str(TOOLS / 'analysis_tools'))
from benchmark import FlopCount  # noqa: E402

FIELDS_CPU = ('seconds', 'cpu_seconds', 'peak_rss_mib', 'model_rss_mib', 'phase_mib', 'gflop', 'gflop_per_s',
              'gemm_gflop_per_s', 'of_gemm')


def test_benchmark_tiny_fiber_table_and_json(tmp_path, tokenizer_dir):
    out = tmp_path / 'figures.json'
    cmd = [sys.executable, str(TOOLS / 'analysis_tools' / 'benchmark.py'),
           str(REPO_ROOT / 'configs' / '_base_' / 'models' / 'fiber_tiny.py'), '--text-config', 'none',
           '--tokenizer', tokenizer_dir, '--size', '96', '128', '--repeat', '1', '--threads', '1',
           '--boxes', '3', '--json', str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    header, *rows = [l for l in proc.stdout.splitlines() if l.startswith(('phase', 'eval', 'train'))]
    assert header.split()[:2] == ['phase', 'seconds'] and [r.split()[0] for r in rows] == ['eval', 'train']
    figures = json.loads(out.read_text())
    assert figures['size'] == [96, 128] and figures['boxes'] == 3 and figures['threads'] == 1
    assert figures['memory'] == 'peak RSS of a process per phase' and figures['params'] > 1e5
    phases = figures['phases']
    for phase in ('eval', 'train'):
        r = phases[phase]
        assert all(r[k] > 0 for k in FIELDS_CPU), (phase, r)
        assert r['peak_rss_mib'] == r['model_rss_mib'] + r['phase_mib']
        assert r['of_gemm'] < 1.5  # a model does not outrun the machine's dense GEMM by much
        # the table prints the same seconds
        assert f'{r["seconds"]:.3f}' in next(l for l in rows if l.startswith(phase))
    # a training step = forward + backward (about 2x the forward) + the loss: at least twice the eval FLOPs
    assert phases['train']['gflop'] > 2 * phases['eval']['gflop']


def test_flop_count_adds_deformable_convolutions_and_cpu_attention():
    from mmcv.ops import ModulatedDeformConv2d

    class Net(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.dcn = ModulatedDeformConv2d(4, 6, 3, padding=1)

        def forward(self, x, offset, mask, q):
            y = self.dcn(x, offset, mask)
            return y, torch.nn.functional.scaled_dot_product_attention(q, q, q)

    net = Net()
    x, offset, mask = torch.randn(1, 4, 8, 8), torch.zeros(1, 18, 8, 8), torch.ones(1, 9, 8, 8)
    q = torch.randn(1, 2, 16, 8)
    with FlopCount(net, backward=False) as flops:
        net(x, offset, mask, q)
    dcn = 2 * (6 * 8 * 8) * 4 * 9
    attention = 2 * (2 * 2 * 16 * 16 * 8)  # q kᵀ and p v
    assert flops.total == dcn + attention


def test_cuda_device_is_the_one_given_to_every_cuda_call():
    """``--device cuda:1`` must synchronise and read the memory of cuda:1, not the current device (cuda:0)."""
    from benchmark import cuda_device
    assert cuda_device('cuda:1') == torch.device('cuda', 1)
    assert cuda_device('cuda') == torch.device('cuda') and cuda_device('cuda').index is None
    assert cuda_device('cpu') is None


def _deform_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    offset = torch.randn(1, 18, 8, 8, generator=g) * 1.5  # fractional positions: real bilinear sampling
    mask = torch.rand(1, 9, 8, 8, generator=g)
    return x, offset, mask


def test_flop_count_counts_the_cpu_deformable_convolution_once():
    """The head's deformable convolution on the CPU is grid sampling plus one matmul, which the FLOP counter
    sees; the dense count must not be added on top of it (it was: 2x, in evaluation and in training)."""
    from fiber_mmdet.models.layers.fp32_deform_conv import FP32ModulatedDeformConv2d
    torch.manual_seed(0)
    conv = FP32ModulatedDeformConv2d(4, 6, 3, padding=1)
    x, offset, mask = _deform_inputs()
    dense = 2 * (6 * 8 * 8) * 4 * 9  # 2 x outputs x C_in x k²
    with torch.no_grad(), FlopCount(conv, backward=False) as flops:
        conv(x, offset, mask)
    assert flops.total == dense
    # training: the forward product and the two of backward (the columns' and the weight's gradients). With
    # recompute_columns backward samples the columns again, but checkpoint's recomputation stops once the
    # saved tensors are back, before the product: no product runs twice.
    for recompute in (True, False):
        conv.recompute_columns = recompute
        with FlopCount(conv, backward=True) as flops:
            conv(x.requires_grad_(), offset.requires_grad_(), mask.requires_grad_()).square().sum().backward()
        assert flops.total == 3 * dense, recompute


def test_flop_count_of_mmcv_deformable_kernel_is_the_dense_count():
    """mmcv's kernel (what runs on CUDA; here its CPU version): the counter sees none of the products inside
    the extension, so the dense count is added: forward = the dense count, training = 3x."""
    from fiber_mmdet.models.layers.fp32_deform_conv import FP32ModulatedDeformConv2d
    torch.manual_seed(0)
    conv = FP32ModulatedDeformConv2d(4, 6, 3, padding=1)
    conv.use_mmcv_cpu_kernel = True
    x, offset, mask = _deform_inputs()
    dense = 2 * (6 * 8 * 8) * 4 * 9
    with torch.no_grad(), FlopCount(conv, backward=False) as flops:
        conv(x, offset, mask)
    assert flops.total == dense
    with FlopCount(conv, backward=True) as flops:
        conv(x.requires_grad_(), offset.requires_grad_(), mask.requires_grad_()).square().sum().backward()
    assert flops.total == 3 * dense
