"""Non-finite losses and gradients: the step is skipped (no update, no EMA update), logged and counted; a run of
them stops training; no checkpoint with NaN/inf weights is written."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from fiber_mmdet.engine import NonFiniteTrainingError
from ..test_engine.conftest import ToyDataset, ToyGroundingModel


class NaNAtModel(ToyGroundingModel):
    """The engine tests' toy model whose loss is NaN at the given (0-based) training forward calls."""

    def __init__(self, nan_at=()) -> None:
        super().__init__()
        self.nan_at = set(nan_at)
        self.forward_calls = 0

    def forward(self, inputs, targets, mode='tensor'):
        out = super().forward(inputs, targets, mode)
        if mode == 'loss':
            if self.forward_calls in self.nan_at:
                out = dict(loss=out['loss'] * float('nan'))
            self.forward_calls += 1
        return out


class Snapshot(Hook):
    """Keeps the weights and the EMA step count after every iteration."""
    priority = 'LOWEST'

    def __init__(self) -> None:
        self.weights, self.ema_steps = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.weights.append(copy.deepcopy(runner.model.state_dict()))
        ema = [h for h in runner.hooks if type(h).__name__ == 'NonFiniteSkipEMAHook'][0]
        self.ema_steps.append(int(ema.ema_model.steps))


def _runner(work_dir, model, max_iters=8, max_consecutive=10, hooks=()):
    return Runner(
        model=model, work_dir=str(work_dir), experiment_name=osp.basename(str(work_dir)), default_scope='mmdet',
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(type='NonFiniteSkipOptimWrapper', optimizer=dict(type='AdamW', lr=0.01),
                           clip_grad=dict(max_norm=1.0)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1),
                           non_finite=dict(type='NonFiniteGuardHook', max_consecutive_skips=max_consecutive)),
        custom_hooks=[dict(type='NonFiniteSkipEMAHook', momentum=0.1, priority=49), *hooks],
        log_processor=dict(window_size=1, by_epoch=False), randomness=dict(seed=0))


def test_nan_steps_in_the_middle_are_skipped_and_training_ends(tmp_path, capsys):
    snapshot = Snapshot()
    runner = _runner(tmp_path, NaNAtModel(nan_at={3, 4}), hooks=[snapshot])
    runner.train()
    w = snapshot.weights
    for i in (3, 4):  # iterations 4 and 5 (1-based) left the weights and the EMA exactly as they were
        assert all(torch.equal(w[i][k], w[i - 1][k]) for k in w[i])
        assert snapshot.ema_steps[i] == snapshot.ema_steps[i - 1]
    assert not all(torch.equal(w[5][k], w[4][k]) for k in w[5])  # and training went on
    assert snapshot.ema_steps[-1] == snapshot.ema_steps[2] + 3
    assert all(torch.isfinite(v).all() for v in w[-1].values() if v.is_floating_point())
    assert runner.optim_wrapper.skipped_steps == 2
    log = open(glob.glob(osp.join(str(tmp_path), '*', '*.log'))[0]).read()
    assert 'iteration 4: step skipped (non-finite loss): loss=nan; 1 in a row, 1 in this run' in log
    assert 'iteration 5: step skipped (non-finite loss): loss=nan; 2 in a row, 2 in this run' in log
    assert '2 of 8 training steps were skipped for non-finite values (iterations 4, 5)' in log


def test_consecutive_nan_steps_stop_training_and_keep_the_last_checkpoint(tmp_path):
    runner = _runner(tmp_path, NaNAtModel(nan_at=range(3, 100)), max_consecutive=3)
    with pytest.raises(NonFiniteTrainingError, match=r'3 consecutive steps skipped \(iterations 4-6'):
        runner.train()
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(str(tmp_path), '*.pth'))) == ['iter_2.pth', 'iter_4.pth']
    state = torch.load(osp.join(str(tmp_path), 'iter_4.pth'))['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


class SqrtAtZero(ToyGroundingModel):
    """A finite loss (0) whose gradient is inf: d sqrt(x) / dx at 0."""

    def forward(self, inputs, targets, mode='tensor'):
        out = super().forward(inputs, targets, mode)
        if mode == 'loss':
            out = dict(loss=out['loss'] + torch.sqrt(self.bbox_head.bias0 * 0).sum())
        return out


def test_non_finite_gradients_with_a_finite_loss_are_skipped(tmp_path):
    runner = _runner(tmp_path, SqrtAtZero(), max_iters=3, max_consecutive=5)
    before = copy.deepcopy(runner.model.state_dict())
    runner.train()
    assert runner.optim_wrapper.skipped_steps == 3 and runner.optim_wrapper.last_skip == 'non-finite gradients'
    assert all(torch.equal(before[k], v) for k, v in runner.model.state_dict().items())


class PoisonWeights(Hook):
    """Writes a NaN into one weight after iteration 3 (as an unguarded optimizer step would)."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter == 2:
            with torch.no_grad():
                runner.model.backbone[0].weight[0, 0] = float('nan')


@pytest.mark.parametrize('check_every,message', [
    (1, r"iteration 4: 1 weight tensor\(s\) are NaN/inf \(first: \['backbone.0.weight'\]\).*iter_2.pth"),
    (0, r"refusing to save a checkpoint at iteration 4: 1 tensor\(s\) of its state_dict hold NaN/inf "
        r"\(first: \['backbone.0.weight'\]\)")])
def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path, check_every, message):
    """Weights poisoned after iteration 3: the per-iteration check stops at iteration 4 before the checkpoint
    hook runs; with it off, the save at iteration 4 is refused. Either way iter_2.pth is the last checkpoint."""
    runner = _runner(tmp_path, ToyGroundingModel(), hooks=[PoisonWeights()])
    for hook in runner.hooks:
        if type(hook).__name__ == 'NonFiniteGuardHook':
            hook.check_weights_every = check_every
    with pytest.raises(NonFiniteTrainingError, match=message):
        runner.train()
    assert [osp.basename(p) for p in glob.glob(osp.join(str(tmp_path), '*.pth'))] == ['iter_2.pth']


def test_plain_optim_wrapper_is_warned_about(tmp_path):
    runner = Runner(
        model=ToyGroundingModel(), work_dir=str(tmp_path), experiment_name=tmp_path.name, default_scope='mmdet',
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler'), batch_size=2,
                              num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=1), default_hooks=dict(non_finite=dict(type='NonFiniteGuardHook')))
    runner.train()
    log = open(glob.glob(osp.join(str(tmp_path), '*', '*.log'))[0]).read()
    assert 'optim_wrapper OptimWrapper steps whatever the loss' in log


def test_amp_loss_scaler_skips_are_recorded():
    """On the CPU the wrapper's loss scaler is torch's CPU GradScaler (default scale 2**16), so the real scaler
    decides the skip. A finite loss whose scaled gradients overflow is skipped by the scaler, recorded by the
    wrapper, and the weight is left as it was."""
    from fiber_mmdet.engine import NonFiniteSkipAmpOptimWrapper
    weight = torch.nn.Parameter(torch.ones(2))
    wrapper = NonFiniteSkipAmpOptimWrapper(optimizer=torch.optim.SGD([weight], lr=0.1), dtype='float16')
    assert wrapper.loss_scaler.get_scale() == 2.0**16
    wrapper.update_params((weight * 1e34).sum())  # finite loss, 2**16 x 1e34 overflows float32 in backward
    assert wrapper.last_skip == 'inf/NaN gradients (AMP loss scaler: scale 65536 -> 32768)'
    assert wrapper.skipped_steps == 1 and torch.equal(weight.detach(), torch.ones(2))
    wrapper.update_params(weight.sum())
    assert wrapper.last_skip is None and wrapper.skipped_steps == 1
    assert torch.allclose(weight.detach(), torch.full((2, ), 0.9))
    wrapper.update_params(weight.sum() * float('inf'))
    assert wrapper.last_skip == 'non-finite loss' and wrapper.skipped_steps == 2
