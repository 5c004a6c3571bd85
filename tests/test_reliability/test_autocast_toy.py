"""The toy FIBER (``configs/toy/fiber_toy.py``) trains with MMEngine's ``AmpOptimWrapper`` and tests with
``TestLoop(fp16=True)`` under bfloat16 and float16 autocast on the CPU: finite losses, metrics, detections.

MMEngine 0.10.7 keeps both from the CPU: ``AmpOptimWrapper.__init__`` asserts a GPU (and builds
``torch.cuda.amp.GradScaler``), and ``mmengine.runner.amp.autocast`` asserts bfloat16 on the CPU (``TestLoop``
and ``AmpOptimWrapper.optim_context`` both enter it). So here the wrapper's availability check is lifted, its
scaler is torch's CPU ``GradScaler`` (``torch.amp.GradScaler('cpu')``: real loss scaling, skips included) and,
for float16, MMEngine's ``autocast`` becomes ``torch.autocast('cpu', float16)``; the wrapper's and the loops'
own logic is MMEngine's.
"""
import copy
import math

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.runner import Runner, amp, loops


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


def _cpu_amp(monkeypatch, default_dtype: torch.dtype) -> None:
    """Let MMEngine's AMP pieces run on the CPU, autocasting to ``default_dtype`` where they name no dtype
    (see the module docstring). MMEngine's own ``autocast`` already runs bfloat16 on the CPU: it is kept."""

    def autocast(device_type=None, dtype=None, enabled=True, cache_enabled=None):
        return torch.autocast('cpu', dtype=dtype or default_dtype, enabled=enabled)

    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp_optimizer_wrapper, 'GradScaler', lambda **kw: torch.amp.GradScaler('cpu', **kw))
    if default_dtype != torch.bfloat16:
        monkeypatch.setattr(amp, 'autocast', autocast)  # AmpOptimWrapper.optim_context imports it per call
        monkeypatch.setattr(loops, 'autocast', autocast)  # TestLoop / ValLoop


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_toy_trains_and_tests_under_autocast(toy_cfg, tmp_path, monkeypatch, dtype):
    _cpu_amp(monkeypatch, getattr(torch, dtype))
    cfg = copy.deepcopy(toy_cfg)
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.test_dataloader.update(num_workers=0)
    for dataset in cfg.test_dataloader.dataset.datasets:  # one image of each test set: detection, grounding x2
        dataset.indices = 1
    cfg.train_cfg.update(max_iters=2, val_interval=100)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # no validation after the last iteration
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
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
    assert isinstance(runner.optim_wrapper, amp_optimizer_wrapper.AmpOptimWrapper)
    assert runner.optim_wrapper.cast_dtype == getattr(torch, dtype)
    assert len(record.losses) == 2
    for losses in record.losses:
        assert all(math.isfinite(v) for v in losses.values()), losses
        assert losses['loss_cls'] > 0 and losses['loss_bbox'] > 0

    metrics = runner.test()
    assert record.head_dtypes == {'train': {getattr(torch, dtype)}, 'test': {getattr(torch, dtype)}}
    assert len(record.detections) == 3 and all(n > 0 for _, _, n in record.detections)
    assert {(b, s) for b, s, _ in record.detections} == {(torch.float32, torch.float32)}
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)), metrics
    assert any(k.startswith('shapes/') and 'mAP' in k for k in metrics), sorted(metrics)
    assert any(k.startswith('novel_grounding/') for k in metrics), sorted(metrics)
