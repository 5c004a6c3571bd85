"""Exported toy FIBERs (free text, fixed vocabulary at a fixed size) shared by the deployment tests."""
from pathlib import Path

import pytest

from fiber_mmdet.runtime.compare import compare_detections

from ..conftest import TOY_CONFIG

FIXED_TEXTS = 'circle . square . triangle'
FIXED_SHAPE = (160, 256)  # landscape toy images pad to 160x256


@pytest.fixture(scope='package')
def onnx_exports(toy_root: Path, toy_checkpoint: str, tmp_path_factory) -> dict:
    """``{'free': folder, 'fixed': folder}``: the untrained toy FIBER exported with any text, and with
    ``FIXED_TEXTS`` folded in at ``FIXED_SHAPE``."""
    from fiber_mmdet.deployment import export_onnx
    out = tmp_path_factory.mktemp('onnx')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(toy_root)  # the toy config's tokenizer path is relative to its root
        export_onnx(TOY_CONFIG, toy_checkpoint, str(out / 'free'))
        export_onnx(TOY_CONFIG, toy_checkpoint, str(out / 'fixed'), texts=FIXED_TEXTS, shape=FIXED_SHAPE)
    return dict(free=str(out / 'free'), fixed=str(out / 'fixed'))


@pytest.fixture(scope='package')
def toy_inferencer(toy_root: Path, toy_checkpoint: str):
    """The PyTorch ``FIBERInferencer`` of the same checkpoint."""
    from fiber_mmdet.apis import FIBERInferencer
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(toy_root)
        return FIBERInferencer(TOY_CONFIG, toy_checkpoint, device='cpu', show_progress=False)


def match_detections(expected: dict, actual: dict, box_tol: float = 0.5, score_tol: float = 1e-3) -> None:
    """Every detection of ``expected`` has its own counterpart in ``actual`` (same label and name, box within
    ``box_tol`` px, score within ``score_tol``), and none is left over."""
    result = compare_detections(expected, actual, box_tol, score_tol)
    assert len(expected['scores']) == len(actual['scores'])
    assert result.equal, f'{len(result.unmatched)} of {len(expected["scores"])} unmatched, first: ' + (
        f'{expected["label_names"][result.unmatched[0]]!r} {expected["bboxes"][result.unmatched[0]]}'
        if result.unmatched else '-')
