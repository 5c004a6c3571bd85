"""fp16 AMP: the dynamic loss scaler's start-up back-offs are not non-finite steps.

A linear model whose matmul runs in float16 under the wrapper's own float16 autocast (on the CPU:
``torch.autocast('cpu', float16)``) and whose gradients overflow float16 at every scale above 2**12: from an
initial scale of 2**24 the wrapper's torch ``GradScaler`` (the CPU one) skips the first 12 steps, halving its scale
each time, then trains. Nothing is patched: the scaler, the wrapper, the guard hook and the Runner are the real
ones, on the CPU.
"""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from fiber_mmdet.engine import NonFiniteSkipAmpOptimWrapper, NonFiniteTrainingError, register_checkpoint_safe_globals

INIT_SCALE = 2.0**24
BACKOFFS = 12  # 2**24 ... 2**13 overflow: 8 inputs of 1.0 make a float16 weight gradient of 8 x scale (> 65504)


class HalfLinear(BaseModel):
    """``y = x @ w`` (computed in the autocast type: float16 under the wrapper), loss ``sum(y)`` in float32;
    ``nan_from`` (0-based forward call) on, the loss is NaN. ``dtypes``: the type each forward's matmul ran in."""

    def __init__(self, nan_from: int = -1) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1, bias=False)
        nn.init.zeros_(self.linear.weight)
        self.nan_from = nan_from
        self.calls = 0
        self.dtypes = set()

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, mode: str = 'tensor'):
        out = self.linear(inputs)  # the weight gradient is computed in the same type (overflows in float16)
        self.dtypes.add(out.dtype)
        out = out.float()
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


def _runner(tmp_path, model, max_iters, resume_from=None, **guard) -> Runner:
    """The wrapper is built by the Runner, after the model is on its device: AMP runs there."""
    wrapper = dict(type='NonFiniteSkipAmpOptimWrapper', optimizer=dict(type='SGD', lr=0.01),
                   loss_scale=dict(init_scale=INIT_SCALE), dtype='float16')
    return Runner(
        model=model, work_dir=str(tmp_path), experiment_name=osp.basename(str(tmp_path)), default_scope='mmdet',
        train_dataloader=dict(dataset=Ones(), sampler=dict(type='DefaultSampler', shuffle=False), batch_size=8,
                              num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=wrapper, train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=dict(type='CheckpointHook', interval=BACKOFFS + 1, by_epoch=False),
                           non_finite=dict(type='NonFiniteGuardHook', max_consecutive_skips=10, **guard)),
        log_processor=dict(window_size=1, by_epoch=False), randomness=dict(seed=0), load_from=resume_from,
        resume=resume_from is not None)


def _guard(runner):
    return [h for h in runner.hooks if type(h).__name__ == 'NonFiniteGuardHook'][0]


def test_start_up_backoffs_do_not_stop_fp16_training(tmp_path):
    model = HalfLinear()
    runner = _runner(tmp_path, model, max_iters=BACKOFFS + 3)
    runner.train()  # 12 skipped steps in a row used to stop training at iteration 10
    guard, wrapper = _guard(runner), runner.optim_wrapper
    assert isinstance(wrapper, NonFiniteSkipAmpOptimWrapper)
    assert model.dtypes == {torch.float16}  # the wrapper's autocast (torch.autocast('cpu', float16) here)
    assert runner.iter == BACKOFFS + 3
    assert guard.scaler_backoffs == list(range(1, BACKOFFS + 1))
    assert guard.skipped == [] and guard.consecutive == []
    assert wrapper.loss_scaler.get_scale() == INIT_SCALE / 2**BACKOFFS
    assert wrapper.skipped_steps == BACKOFFS and wrapper.last_skip is None
    # the 3 steps after the back-offs updated the weight: SGD lr 0.01 on a gradient of 8 per entry
    torch.testing.assert_close(model.linear.weight.detach().cpu(), torch.full((1, 4), -0.24))
    log = open(runner.logger.log_file).read()
    assert 'iteration 12: AMP loss scaler backed off (scale 8192 -> 4096)' in log
    assert '12 of 15 training steps were skipped by the AMP loss scaler backing off' in log


def test_resume_keeps_the_loss_scale_found(tmp_path):
    """The scale found by the back-offs is in the checkpoint (``loss_scaler`` of the optimizer state) and a
    resumed run goes on from it: no new back-offs, the same weights as an uninterrupted run."""
    register_checkpoint_safe_globals()
    model = HalfLinear()
    runner = _runner(tmp_path / 'first', model, max_iters=BACKOFFS + 1)
    runner.train()  # checkpoint after the 12 back-offs and one update
    checkpoint = str(tmp_path / 'first' / f'iter_{BACKOFFS + 1}.pth')
    saved = torch.load(checkpoint, weights_only=True)['optimizer']['loss_scaler']
    assert saved['scale'] == INIT_SCALE / 2**BACKOFFS and saved['_growth_tracker'] == 1
    resumed = HalfLinear()
    runner = _runner(tmp_path / 'resumed', resumed, max_iters=BACKOFFS + 3, resume_from=checkpoint)
    runner.train()
    wrapper = runner.optim_wrapper
    assert _guard(runner).scaler_backoffs == [] and wrapper.skipped_steps == 0
    assert wrapper.loss_scaler.get_scale() == INIT_SCALE / 2**BACKOFFS
    assert wrapper.loss_scaler.state_dict()['_growth_tracker'] == 3
    torch.testing.assert_close(resumed.linear.weight.detach().cpu(), torch.full((1, 4), -0.24))


def test_ten_non_finite_losses_still_stop_fp16_training(tmp_path):
    # the loss is NaN from the 14th step on, after the scaler has found its scale: 10 of them stop training
    model = HalfLinear(nan_from=BACKOFFS + 1)
    runner = _runner(tmp_path, model, max_iters=40)
    with pytest.raises(NonFiniteTrainingError, match=r'10 consecutive steps skipped \(iterations 14-23, last reason: '
                       r'non-finite loss\)'):
        runner.train()
    assert _guard(runner).scaler_backoffs == list(range(1, BACKOFFS + 1))


def test_collapsing_loss_scale_stops_training(tmp_path):
    model = HalfLinear()
    runner = _runner(tmp_path, model, max_iters=20, min_loss_scale=2.0**20)
    with pytest.raises(NonFiniteTrainingError, match=r'iteration 5: the AMP loss scale fell to 524288, below '
                       r'NonFiniteGuardHook.min_loss_scale=1048576'):
        runner.train()


def test_bfloat16_trains_without_loss_scaling():
    """With dtype='bfloat16' the recipes' loss_scale='dynamic' is a constant scale of 1: bfloat16 has float32's
    range, and a dynamic scaler would only grow its scale until the scaled loss overflows."""
    weight = nn.Parameter(torch.ones(2))
    bf16 = NonFiniteSkipAmpOptimWrapper(optimizer=torch.optim.SGD([weight], lr=0.1), dtype='bfloat16')
    fp16 = NonFiniteSkipAmpOptimWrapper(optimizer=torch.optim.SGD([weight], lr=0.1), dtype='float16')
    assert bf16.cast_dtype is torch.bfloat16 and bf16._scale_update_param == 1.0
    assert fp16.cast_dtype is torch.float16 and fp16._scale_update_param is None  # dynamic
    assert bf16.loss_scaler.get_scale() == 1.0 and fp16.loss_scaler.get_scale() == 2.0**16
    # under a fixed scale, non-finite gradients of a finite loss are a non-finite step, not a back-off
    bf16.update_params(torch.sqrt(weight - 1).sum())  # loss 0, gradient 1 / (2 sqrt(0)) = inf
    assert bf16.last_skip_cause == 'gradients'
    assert bf16.last_skip == 'non-finite gradients (AMP, fixed loss scale 1)'
    assert bf16.loss_scaler.get_scale() == 1.0 and torch.equal(weight.detach(), torch.ones(2))
    bf16.update_params(weight.sum())
    assert bf16.last_skip is None and torch.allclose(weight.detach(), torch.full((2, ), 0.9))
