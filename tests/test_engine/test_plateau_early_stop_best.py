"""The ODinW protocol's schedule on a scripted validation metric: the lr drops, the stop and the best checkpoint
happen at the validations the original's WarmupReduceLROnPlateau / AUTO_TERMINATE_PATIENCE / model_best pick."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.runner import Runner

from mmdet.registry import METRICS
from .conftest import RecordHook, ToyDataset, ToyGroundingModel

# validation i (1-based) reports SCRIPT[i - 1]
SCRIPT = [0.1, 0.3, 0.3, 0.2, 0.25, 0.28, 0.29, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9]


@METRICS.register_module(force=True)
class ScriptedMetric(BaseMetric):
    """Reports the next value of SCRIPT at every evaluation."""
    default_prefix = 'coco'
    calls = 0

    def process(self, data_batch, data_samples) -> None:
        self.results.append(1)

    def compute_metrics(self, results) -> dict:
        value = SCRIPT[ScriptedMetric.calls]
        ScriptedMetric.calls += 1
        return dict(bbox_mAP=value)


def test_plateau_early_stop_and_best_follow_the_original(repo_root, registered_engine, tmp_path):
    odinw = Config.fromfile(osp.join(repo_root, 'configs', 'odinw', 'fiber_b_odinw13_finetune.py'))
    assert odinw.monitor == 'coco/bbox_mAP'
    ScriptedMetric.calls = 0
    record = RecordHook()
    loader = dict(dataset=ToyDataset(4), sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2,
                  num_workers=0, collate_fn=dict(type='default_collate'))
    runner = Runner(
        model=ToyGroundingModel(), work_dir=str(tmp_path), default_scope='mmdet',
        train_dataloader=dict(loader), val_dataloader=dict(loader), val_evaluator=dict(type='ScriptedMetric'),
        val_cfg=dict(type='ValLoop'),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=0.01, weight_decay=0.05),
                           constructor='FIBEROptimWrapperConstructor'),
        # the protocol's own scheduler, early stop and best-checkpoint settings
        param_scheduler=odinw.param_scheduler, custom_hooks=odinw.custom_hooks + [record],
        default_hooks=dict(checkpoint=odinw.default_hooks.checkpoint),
        train_cfg=dict(by_epoch=True, max_epochs=len(SCRIPT), val_interval=1), randomness=dict(seed=0))
    runner.train()
    # ReduceLROnPlateau(patience=3): the best is 0.3 (validation 2); validations 3-6 do not beat it (the tie
    # included), the 4th of them (validation 6) drops the lr; validations 7-10 again, validation 10 drops it
    lr = {epoch: record.records[2 * epoch]['lr'][0] for epoch in range(runner.epoch)}
    assert [round(lr[e] / 0.01, 6) for e in range(11)] == [1] * 6 + [0.1] * 4 + [0.01]
    # early stop: 8 validations in a row below the best (a tie resets the count: validation 3 = 0.3 is the
    # new best); validations 4-11 are below, so training ends after epoch 11 (of 14)
    assert runner.epoch == 11 and ScriptedMetric.calls == 11
    # model_best: saved on >= best, so the tie at validation 3 replaces validation 2's checkpoint
    assert [osp.basename(p) for p in glob.glob(osp.join(str(tmp_path), 'best_*.pth'))] == [
        'best_coco_bbox_mAP_epoch_3.pth']


def test_fraction_multistep_lr_steps_at_rounded_iterations(registered_engine):
    import torch
    from fiber_mmdet.engine import FractionMultiStepLR
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    # 24 epochs of 10 iterations: round(0.67 * 240) = 161, round(0.89 * 240) = 214 (epoch milestones 16 / 21
    # would drop at 160 / 210)
    sched = FractionMultiStepLR.build_iter_from_epoch(opt, fractions=(0.67, 0.89), begin=0, end=24, by_epoch=True,
                                                      epoch_length=10, gamma=0.1)
    assert sorted(sched.milestones) == [161, 214]
    lrs = []
    for _ in range(240):
        lrs.append(opt.param_groups[0]['lr'])
        sched.step()
    assert lrs[160] == 1.0 and lrs[161] == pytest.approx(0.1) and lrs[213] == pytest.approx(0.1)
    assert lrs[214] == pytest.approx(0.01)
    with pytest.raises(ValueError, match='increasing values in'):
        FractionMultiStepLR(opt, fractions=(0.89, 0.67), end=10, by_epoch=False)
