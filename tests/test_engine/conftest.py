"""A toy model, data set and Runner factory for the engine tests (CPU, a few milliseconds per iteration)."""
from typing import Dict, List, Optional

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset


def module_with_parameters(names: List[str], frozen: tuple = ()) -> nn.Module:
    """An ``nn.Module`` whose ``named_parameters()`` are exactly ``names`` (each a 2-vector)."""
    root = nn.Module()
    for name in names:
        *path, leaf = name.split('.')
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(torch.zeros(2), requires_grad=name not in frozen))
    return root


class ToyGroundingModel(BaseModel):
    """Regression toy whose parameter names exercise every FIBER param-group rule."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.language_model = nn.Linear(4, 8)
        self.bbox_head = nn.Linear(8, 1)
        self.bbox_head.register_parameter('bias0', nn.Parameter(torch.tensor([-0.5])))
        self.bbox_head.register_buffer('calls', torch.zeros((), dtype=torch.long))

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, mode: str = 'tensor'):
        feats = torch.relu(self.backbone(inputs) + self.language_model(inputs))
        pred = self.bbox_head(feats).squeeze(-1) + self.bbox_head.bias0
        if mode == 'loss':
            return dict(loss=((pred - targets)**2).mean())
        return pred


class ToyDataset(Dataset):
    """16 fixed (inputs, target) pairs."""

    def __init__(self, length: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(length, 4, generator=generator)
        self.targets = self.inputs.sum(-1) + 0.1 * torch.randn(length, generator=generator)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return dict(inputs=self.inputs[index], targets=self.targets[index])


class RecordHook(Hook):
    """Records, per iteration, the loss and every param group's lr and weight decay used by the step."""

    priority = 'LOWEST'  # after WeightDecayScheduleHook has set this iteration's values

    def __init__(self) -> None:
        self.records: Dict[int, dict] = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        groups = runner.optim_wrapper.optimizer.param_groups
        self.records[runner.iter] = dict(
            lr=[g['lr'] for g in groups], weight_decay=[g['weight_decay'] for g in groups])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.records[runner.iter]['loss'] = outputs['loss'].item()


def build_toy_runner(work_dir: str,
                     name: str,
                     max_iters: int = 10,
                     resume_from: Optional[str] = None,
                     record: Optional[RecordHook] = None) -> Runner:
    """FIBER's recipe in miniature: param groups, warmup + steps, weight-decay schedule, clipping, EMA."""
    custom_hooks = [
        dict(type='WeightDecayScheduleHook', milestones=[6, 9], gamma=0.1, fraction=0.667),
        dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.001, update_buffers=True,
             priority=49),
    ]
    if record is not None:
        custom_hooks.append(record)
    return Runner(
        model=ToyGroundingModel(),
        work_dir=work_dir,
        experiment_name=name,
        default_scope='mmdet',
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=0.01, weight_decay=0.1),
            constructor='FIBEROptimWrapperConstructor',
            paramwise_cfg=dict(language_model_lr_mult=0.1),
            clip_grad=dict(max_norm=1.0, norm_type=2)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
            dict(type='MultiStepLR', milestones=[6, 9], gamma=0.1, by_epoch=False),
        ],
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=5, by_epoch=False),
            logger=dict(type='LoggerHook', interval=5)),
        custom_hooks=custom_hooks,
        log_processor=dict(window_size=1, by_epoch=False),
        randomness=dict(seed=0),
        load_from=resume_from,
        resume=resume_from is not None)


@pytest.fixture(scope='module')
def registered_engine():
    """Import the engine so its hook and constructor are registered, and allow-list checkpoint globals."""
    from fiber_mmdet import engine
    engine.register_checkpoint_safe_globals()
    return engine
