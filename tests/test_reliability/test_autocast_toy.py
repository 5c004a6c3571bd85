"""The toy FIBER (``configs/toy/fiber_toy.py``) trains with ``NonFiniteSkipAmpOptimWrapper`` under bfloat16 and
float16 autocast on the CPU (torch's CPU ``GradScaler`` and ``torch.autocast('cpu', dtype)``, nothing patched):
finite losses, the bbox head computing in the autocast type. It then tests with ``TestLoop(fp16=True)``, which
enters MMEngine's ``autocast``: on the CPU that is bfloat16 whatever the training type (MMEngine asserts
bfloat16 there); the detections come out in float32 and the metrics are finite.
"""
import copy
import math

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from fiber_mmdet.engine import NonFiniteSkipAmpOptimWrapper


class Record(Hook):
    """Keeps the training losses, per test image the dtypes and number of its detections, and the dtypes the
    bbox head computed its box deltas in (per phase)."""

    def __init__(self) -> None:
        self.losses, self.detections = [], []
        self.head_dtypes = {'train': set(), 'test': set()}

    def keep_head_dtype(self, module, args, outs) -> None:
        self.head_dtypes['train' if module.training else 'test'].add(outs[1][0].dtype)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append({k: float(v) for k, v in outputs.items()})

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for sample in outputs:
            pred = sample.pred_instances
            self.detections.append((pred.bboxes.dtype, pred.scores.dtype, len(pred)))


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_toy_trains_and_tests_under_autocast(toy_cfg, tmp_path, dtype):
    cfg = copy.deepcopy(toy_cfg)
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.test_dataloader.update(num_workers=0)
    for dataset in cfg.test_dataloader.dataset.datasets:  # one image of each test set: detection, grounding x2
        dataset.indices = 1
    cfg.train_cfg.update(max_iters=2, val_interval=100)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # no validation after the last iteration
    cfg.optim_wrapper.type = 'NonFiniteSkipAmpOptimWrapper'
    cfg.optim_wrapper.dtype = dtype
    cfg.test_cfg = dict(type='TestLoop', fp16=True)
    cfg.model.test_cfg.score_thr = 0.0  # 2 steps from initialisation: every anchor scores about 0.01
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 100
    cfg.log_processor.window_size = 1
    runner = Runner.from_cfg(cfg)
    record = Record()
    runner.register_hook(record)
    runner.model.bbox_head.register_forward_hook(record.keep_head_dtype)
    runner.train()
    wrapper = runner.optim_wrapper
    assert isinstance(wrapper, NonFiniteSkipAmpOptimWrapper) and wrapper.cast_dtype == getattr(torch, dtype)
    # float16: dynamic loss scaling (from 2**16); bfloat16: a constant scale of 1
    assert wrapper.loss_scaler.is_enabled() and wrapper.skipped_steps == 0
    assert wrapper._scale_update_param == (None if dtype == 'float16' else 1.0)
    assert wrapper.last_loss_scale == ((2.0**16, 2.0**16) if dtype == 'float16' else (1.0, 1.0))
    assert len(record.losses) == 2
    for losses in record.losses:
        assert all(math.isfinite(v) for v in losses.values()), losses
        assert losses['loss_cls'] > 0 and losses['loss_bbox'] > 0

    metrics = runner.test()
    # TestLoop(fp16=True): MMEngine's autocast without a dtype, bfloat16 on the CPU (float16 on CUDA)
    on_cpu = next(runner.model.parameters()).device.type == 'cpu'
    test_dtype = torch.bfloat16 if on_cpu else torch.float16
    assert record.head_dtypes == {'train': {getattr(torch, dtype)}, 'test': {test_dtype}}
    assert len(record.detections) == 3 and all(n > 0 for _, _, n in record.detections)
    assert {(b, s) for b, s, _ in record.detections} == {(torch.float32, torch.float32)}
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)), metrics
    assert any(k.startswith('shapes/') and 'mAP' in k for k in metrics), sorted(metrics)
    assert any(k.startswith('novel_grounding/') for k in metrics), sorted(metrics)
