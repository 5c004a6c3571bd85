"""fp16 AMP: the dynamic loss scaler's start-up back-offs are not non-finite steps.

A model whose forward runs in float16 (as CUDA autocast runs its matmuls) and whose gradients overflow float16 at
every scale above 2**12: from an initial scale of 2**24 the real torch ``GradScaler`` skips the first 12 steps,
halving its scale each time, then trains. MMEngine's ``AmpOptimWrapper`` refuses to start without a GPU, so its
availability check is lifted and its CUDA scaler (disabled without CUDA) replaced by torch's CPU one; the scaler,
the wrapper, the guard hook and the Runner are the real ones.
"""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.runner import Runner
from torch.utils.data import Dataset

from fiber_mmdet.engine import NonFiniteSkipAmpOptimWrapper, NonFiniteTrainingError

INIT_SCALE = 2.0**24
BACKOFFS = 12  # 2**24 ... 2**13 overflow: 8 inputs of 1.0 make a float16 weight gradient of 8 x scale (> 65504)


class HalfLinear(BaseModel):
    """``y = x @ w`` computed in float16, loss ``sum(y)`` in float32; ``nan_from`` (0-based forward call) on, the
    loss is NaN."""

    def __init__(self, nan_from: int = -1) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1, bias=False)
        nn.init.zeros_(self.linear.weight)
        self.nan_from = nan_from
        self.calls = 0

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, mode: str = 'tensor'):
        # explicit float16 (CPU autocast only offers bfloat16); gradients flow back through float16 as under CUDA
        with torch.autocast('cpu', enabled=False):
            out = (inputs.half() @ self.linear.weight.half().t()).float()
        if mode != 'loss':
            return out
        loss = out.sum()
        if 0 <= self.nan_from <= self.calls:
            loss = loss * float('nan')
        self.calls += 1
        return dict(loss=loss)


class Ones(Dataset):
    """All-ones inputs; long enough that no run reaches the end of an epoch (MMEngine's iteration-based loop
    sleeps 2 s at each epoch end)."""

    def __len__(self) -> int:
        return 8 * 50

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=torch.ones(4), targets=torch.zeros(()))


def _amp_wrapper(model: nn.Module, monkeypatch) -> NonFiniteSkipAmpOptimWrapper:
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    wrapper = NonFiniteSkipAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                                           loss_scale=dict(init_scale=INIT_SCALE))
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=INIT_SCALE)
    return wrapper


def _runner(tmp_path, model, wrapper, max_iters, **guard) -> Runner:
    return Runner(
        model=model, work_dir=str(tmp_path), experiment_name=osp.basename(str(tmp_path)), default_scope='mmdet',
        train_dataloader=dict(dataset=Ones(), sampler=dict(type='DefaultSampler', shuffle=False), batch_size=8,
                              num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=wrapper, train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1), checkpoint=None,
                           non_finite=dict(type='NonFiniteGuardHook', max_consecutive_skips=10, **guard)),
        log_processor=dict(window_size=1, by_epoch=False), randomness=dict(seed=0))


def _guard(runner):
    return [h for h in runner.hooks if type(h).__name__ == 'NonFiniteGuardHook'][0]


def test_start_up_backoffs_do_not_stop_fp16_training(tmp_path, monkeypatch):
    model = HalfLinear()
    wrapper = _amp_wrapper(model, monkeypatch)
    runner = _runner(tmp_path, model, wrapper, max_iters=BACKOFFS + 3)
    runner.train()  # 12 skipped steps in a row used to stop training at iteration 10
    guard = _guard(runner)
    assert runner.iter == BACKOFFS + 3
    assert guard.scaler_backoffs == list(range(1, BACKOFFS + 1))
    assert guard.skipped == [] and guard.consecutive == []
    assert wrapper.loss_scaler.get_scale() == INIT_SCALE / 2**BACKOFFS
    assert wrapper.skipped_steps == BACKOFFS and wrapper.last_skip is None
    # the 3 steps after the back-offs updated the weight: SGD lr 0.01 on a gradient of 8 per entry
    torch.testing.assert_close(model.linear.weight.detach(), torch.full((1, 4), -0.24))
    log = open(runner.logger.log_file).read()
    assert 'iteration 12: AMP loss scaler backed off (scale 8192 -> 4096)' in log
    assert '12 of 15 training steps were skipped by the AMP loss scaler backing off' in log


def test_ten_non_finite_losses_still_stop_fp16_training(tmp_path, monkeypatch):
    # the loss is NaN from the 14th step on, after the scaler has found its scale: 10 of them stop training
    model = HalfLinear(nan_from=BACKOFFS + 1)
    runner = _runner(tmp_path, model, _amp_wrapper(model, monkeypatch), max_iters=40)
    with pytest.raises(NonFiniteTrainingError, match=r'10 consecutive steps skipped \(iterations 14-23, last reason: '
                       r'non-finite loss\)'):
        runner.train()
    assert _guard(runner).scaler_backoffs == list(range(1, BACKOFFS + 1))


def test_collapsing_loss_scale_stops_training(tmp_path, monkeypatch):
    model = HalfLinear()
    runner = _runner(tmp_path, model, _amp_wrapper(model, monkeypatch), max_iters=20, min_loss_scale=2.0**20)
    with pytest.raises(NonFiniteTrainingError, match=r'iteration 5: the AMP loss scale fell to 524288, below '
                       r'NonFiniteGuardHook.min_loss_scale=1048576'):
        runner.train()


def test_bfloat16_trains_without_loss_scaling(monkeypatch):
    """With dtype='bfloat16' the recipes' loss_scale='dynamic' is a constant scale of 1: bfloat16 has float32's
    range, and a dynamic scaler would only grow its scale until the scaled loss overflows."""
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    weight = nn.Parameter(torch.ones(2))
    bf16 = NonFiniteSkipAmpOptimWrapper(optimizer=torch.optim.SGD([weight], lr=0.1), dtype='bfloat16')
    fp16 = NonFiniteSkipAmpOptimWrapper(optimizer=torch.optim.SGD([weight], lr=0.1), dtype='float16')
    assert bf16.cast_dtype is torch.bfloat16 and bf16._scale_update_param == 1.0
    assert fp16.cast_dtype is torch.float16 and fp16._scale_update_param is None  # dynamic
    # under a fixed scale, non-finite gradients of a finite loss are a non-finite step, not a back-off
    bf16.loss_scaler = torch.amp.GradScaler('cpu', init_scale=1.0)
    bf16.update_params(torch.sqrt(weight - 1).sum())  # loss 0, gradient 1 / (2 sqrt(0)) = inf
    assert bf16.last_skip_cause == 'gradients'
    assert bf16.last_skip == 'non-finite gradients (AMP, fixed loss scale 1)'
    assert bf16.loss_scaler.get_scale() == 1.0 and torch.equal(weight.detach(), torch.ones(2))
    bf16.update_params(weight.sum())
    assert bf16.last_skip is None and torch.allclose(weight.detach(), torch.full((2, ), 0.9))
