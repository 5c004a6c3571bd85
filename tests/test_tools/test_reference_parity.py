"""The model reproduces the original FIBER implementation on the shared reference fixtures; on CUDA the parity
tool switches TF32 off first."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

from .conftest import load_tool


@pytest.mark.parametrize('name', ['tiny_v2', 'tiny_v3'])
def test_reference_parity(name, repo_root, reference_root):
    tool = osp.join(repo_root, 'tools', 'analysis_tools', 'reference_parity.py')
    proc = subprocess.run([sys.executable, tool, osp.join(reference_root, name)], capture_output=True,
                          text=True, cwd=repo_root, timeout=900)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'checks passed' in proc.stdout and 'FAIL' not in proc.stdout


def _tf32_flags():
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


def test_disable_tf32_turns_tf32_off_on_cuda_only():
    """cuDNN convolutions default to TF32 (~1e-3 relative), 10x the parity tolerance: on a CUDA device the tool
    must switch it off (and say so); on the CPU, where TF32 does not exist, it leaves the flags alone."""
    parity = load_tool('analysis_tools/reference_parity.py')
    saved = _tf32_flags()
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        assert parity.disable_tf32('cpu') is None
        assert _tf32_flags()[:2] == (True, True)
        message = parity.disable_tf32('cuda:1')
        assert _tf32_flags() == (False, False, 'highest')
        assert 'TF32 off' in message and 'allow_tf32=False' in message
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


@pytest.mark.parametrize('name', ['tiny_v2', 'tiny_v3'])
def test_prompt_length_text_reproduces_the_original(name, reference_root):
    """Each fixture image alone with its caption on its own tokens only (``test_cfg.trim_text_padding``): the
    original's detections, which it computed on the padded caption, within the parity tool's tolerances."""
    tool = load_tool('analysis_tools/reference_parity.py')
    fixture = osp.join(reference_root, name)
    torch.manual_seed(0)
    model, _ = tool.build_model(fixture, 'cpu')
    inputs = torch.load(osp.join(fixture, 'inputs.pth'), map_location='cpu', weights_only=True)
    ref = torch.load(osp.join(fixture, 'outputs.pth'), map_location='cpu', weights_only=True)
    report = tool.Report()
    sizes = [list(s) for s in inputs['image_sizes']]
    for img, image in enumerate(inputs['images']):
        length = int(inputs['attention_mask'][img].sum())
        assert length < inputs['input_ids'].shape[1]  # the fixture pads: trimming changes the input
        ids, mask = inputs['input_ids'][img:img + 1, :length], inputs['attention_mask'][img:img + 1, :length]
        with torch.no_grad():
            single = tool.run_forward(model, image[None], ids, mask)
        det = tool.predict(model, single, [sizes[img]], list(image.shape[-2:]), [inputs['label_to_tokens'][img]])[0]
        tool.compare_detections(report, f'trimmed single[{img}]', det, ref['single_image'][img]['detections'])
    assert report.print()
