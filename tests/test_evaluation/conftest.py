"""Shared helpers for the evaluation tests: where the golden fixtures live and how data samples look.

The golden fixtures (``fixtures/eval/{coco_det,lvis_fixed_ap,refexp,flickr}``) hold small annotation and prediction
files with the numbers the ORIGINAL FIBER evaluators produced on them. They are looked up in
``$FIBER_EVAL_FIXTURES``, then in ``../shared/fixtures/eval`` next to the repository root.
"""
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes

import fiber_mmdet.evaluation  # noqa: F401  (registers the metrics)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _find_fixtures() -> Optional[Path]:
    candidates = []
    if os.environ.get('FIBER_EVAL_FIXTURES'):
        candidates.append(Path(os.environ['FIBER_EVAL_FIXTURES']))
    candidates.append(REPO_ROOT.parent / 'shared' / 'fixtures' / 'eval')
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope='session')
def eval_fixtures() -> Path:
    """Root of the golden evaluation fixtures; skips the test when it cannot be found."""
    root = _find_fixtures()
    if root is None:
        pytest.skip('golden evaluation fixtures not found: set $FIBER_EVAL_FIXTURES or provide '
                    f'{REPO_ROOT.parent / "shared" / "fixtures" / "eval"}')
    return root


@pytest.fixture(scope='session')
def make_sample() -> Callable[..., dict]:
    """Build what ``Evaluator.process`` hands to a metric: ``DetDataSample.to_dict()`` of a predicted sample.

    Boxes are xyxy in original-image pixels, labels 0-based, as a detector's ``pred_instances``.
    """

    def _make(img_id: int,
              bboxes: Sequence[Sequence[float]],
              scores: Sequence[float],
              labels: Sequence[int],
              ori_shape=(480, 640),
              gt_bboxes: Optional[Sequence[Sequence[float]]] = None,
              **metainfo) -> dict:
        sample = DetDataSample(metainfo=dict(img_id=img_id, ori_shape=ori_shape, **metainfo))
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor(scores, dtype=torch.float32).reshape(-1),
            labels=torch.tensor(labels, dtype=torch.int64).reshape(-1))
        if gt_bboxes is not None:
            sample.gt_instances = InstanceData(
                bboxes=HorizontalBoxes(torch.tensor(gt_bboxes, dtype=torch.float32).reshape(-1, 4)))
        return sample.to_dict()

    return _make
