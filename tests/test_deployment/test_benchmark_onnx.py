"""tools/analysis_tools/benchmark_onnx.py on the toy model: times both graphs against PyTorch, pairs the detections,
measures the NMS; gpu_check's onnx line reads its result. The graphs are the package's exports of the same
weights (the untrained toy checkpoint is seed 0 with the prior bias at 0, as the benchmark builds it)."""
import json
import os.path as osp
import shutil
import subprocess
import sys

from ..conftest import REPO_ROOT, TOY_CONFIG
from ..test_tools.conftest import load_tool


def test_benchmark_onnx_on_the_toy_model(toy_root, onnx_exports, tmp_path):
    out = tmp_path / 'bench.json'
    shutil.copytree(onnx_exports['free'], tmp_path / 'work' / 'onnx_free_text')
    shutil.copytree(onnx_exports['fixed'], tmp_path / 'work' / 'onnx_fixed_vocabulary')  # 160x256: the size below
    proc = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'benchmark_onnx.py'), TOY_CONFIG,
         '--text-config', 'none', '--tokenizer', str(toy_root / 'data' / 'toy_shapes' / 'tokenizer'),
         '--sizes', '144x256', '--prompt', 'circle. square. triangle', '--repeat', '1', '--threads', '1',
         '--work-dir', str(tmp_path / 'work'), '--reuse-exports', '--json', str(out)],
        capture_output=True, text=True, timeout=600, cwd=str(toy_root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result['sizes']['144x256']
    for kind in ('onnx_free_text', 'onnx_fixed_vocabulary'):
        assert rows[kind]['parity'] is True and rows[kind]['detections'] == 100
        assert rows[kind]['max_box_diff_px'] < 0.01 and rows[kind]['seconds'] > 0
    assert rows['nms']['candidates'] == 1000 and rows['nms']['kept_numpy'] > 0
    assert 'parity True' in proc.stdout
    gpu_check = load_tool('analysis_tools/gpu_check.py')
    line = gpu_check.onnx_line(result, 'CPU')
    assert line.startswith('PASS onnx_CPU: 144x256 free_text') and 'fixed_vocabulary' in line
    rows['onnx_free_text']['parity'] = False
    assert gpu_check.onnx_line(result, 'CPU').startswith('FAIL')
