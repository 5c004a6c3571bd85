"""The GPU parity fixture (tools/analysis_tools/fixtures/gpu_parity): small, complete, and still reproduced by the
CPU in float32 -- the link that lets the GPU check compare a GPU with the CPU instead of the original FIBER."""
import os
import os.path as osp

import pytest
import torch

from .conftest import load_tool

gpu_parity = load_tool('analysis_tools/gpu_parity.py')


@pytest.fixture(autouse=True)
def one_thread():
    """The model is tiny: one thread runs it in 0.2 s, while two threads on a busy CPU can wait seconds for a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fixture_is_complete_and_small():
    assert gpu_parity.missing_files() == []
    size = sum(osp.getsize(osp.join(d, f)) for d, _, files in os.walk(gpu_parity.FIXTURE_DIR) for f in files)
    assert size < 3 * 2**20, size
    ref = gpu_parity.load_reference()
    assert [len(d['scores']) for d in ref['outputs']['detections']] == [18, 32]  # real candidates, not empty
    assert set(ref['outputs']['losses']) == {'loss_cls', 'loss_bbox', 'loss_centerness'}


def test_cpu_reproduces_the_fixture_within_1e_5():
    """Features, text, head outputs and losses within 1e-5 of each tensor's scale, detections within 1e-3 px /
    1e-5; if this fails after an intended change of the model's float32 outputs, rewrite the fixture with
    tools/analysis_tools/make_gpu_parity_fixture.py (and check reference_parity.py first)."""
    report = gpu_parity.check('cpu', feature_rtol=1e-5, loss_rtol=1e-5, box_atol=1e-3, score_atol=1e-5)
    report.print()
    assert all(row[3] for row in report.rows), [row for row in report.rows if not row[3]]
    assert len(report.rows) == 26


def test_a_changed_weight_fails_the_comparison():
    """The comparison sees a 0.1 % change of P3's output convolution, in P3 and its head outputs, and nowhere
    else (the extra levels are computed from P5)."""
    ref = gpu_parity.load_reference()
    model = gpu_parity.build_model()
    with torch.no_grad():
        model.neck.fpn_convs[0].conv.weight.mul_(1.001)
    report = gpu_parity.compare(gpu_parity.run_outputs(model, ref['inputs'], 'cpu'), ref['outputs'])
    failed = {row[0] for row in report.rows if not row[3]}
    assert {'fpn[0]', 'dot_product_logits[0]', 'bbox_reg[0]'} <= failed, report.rows
    assert not any(name.startswith('fpn[') and name != 'fpn[0]' for name in failed), failed
