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
