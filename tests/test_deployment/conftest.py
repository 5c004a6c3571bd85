"""Exported toy FIBERs (free text, fixed vocabulary at a fixed size) shared by the deployment tests."""
from pathlib import Path

import pytest

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
    """Every detection of ``expected`` has its own counterpart in ``actual`` with the same label and label
    name, the box within ``box_tol`` px and the score within ``score_tol``; the counts are equal. (Near-equal
    scores may come out in another order, so detections are paired, not compared by position.)"""
    assert len(expected['scores']) == len(actual['scores'])
    free = list(range(len(actual['scores'])))
    for box, score, label, name in zip(expected['bboxes'], expected['scores'], expected['labels'],
                                       expected['label_names']):
        found = None
        for j in free:
            if (actual['labels'][j] == label and actual['label_names'][j] == name
                    and abs(actual['scores'][j] - score) <= score_tol
                    and max(abs(a - b) for a, b in zip(actual['bboxes'][j], box)) <= box_tol):
                found = j
                break
        assert found is not None, f'no match for {name!r} {score:.4f} {box}'
        free.remove(found)
