"""The collective timeout: rank 0 alone computes the metrics while the other ranks wait in a broadcast, and LVIS
Fixed AP takes longer than NCCL's 10-minute default. The configs set ``env_cfg.dist_cfg.timeout`` (seconds), and
the value reaches ``torch.distributed.init_process_group`` both through MMEngine's Runner (``init_dist``, the GPU
path) and through the tools' CPU path (``setup_cpu_distributed``)."""
import os.path as osp

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner import Runner

from fiber_mmdet.engine.dist import setup_cpu_distributed
from ..test_engine.dist_helpers import run_on_ranks

LVIS = ['configs/lvis/fiber_b_lvis_minival_fixed_ap.py', 'configs/lvis/fiber_b_lvis_val_fixed_ap.py',
        'configs/lvis/fiber_b_lvis_finetune.py']
OTHERS = ['configs/coco/fiber_b_coco_finetune.py', 'configs/odinw/fiber_b_odinw35.py', 'configs/toy/fiber_toy.py']

class Tiny(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.linear(inputs)


def _group_timeout() -> float:
    backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device('cpu'))
    return backend.options._timeout.total_seconds()


def _probe(rank, world_size, config, work_dir):
    """The default group's timeout when MMEngine's Runner creates it (launcher 'pytorch', the config's env_cfg with
    backend gloo), then when the tools' CPU set-up does."""
    cfg = Config.fromfile(config)
    env_cfg = cfg.env_cfg.copy()
    env_cfg.dist_cfg.backend = 'gloo'
    torch.cuda.set_device = lambda device: None  # the one call of MMEngine's init_dist that needs a GPU
    Runner(model=Tiny(), work_dir=work_dir, launcher='pytorch', env_cfg=env_cfg,
           cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None)))
    through_runner = _group_timeout()
    dist.destroy_process_group()
    cfg.launcher = 'pytorch'
    assert setup_cpu_distributed(cfg)
    return through_runner, _group_timeout()


@pytest.mark.parametrize('path', LVIS)
def test_lvis_configs_wait_four_hours(repo_root, path):
    dist_cfg = Config.fromfile(osp.join(repo_root, path)).env_cfg.dist_cfg
    assert (dist_cfg.backend, dist_cfg.timeout) == ('nccl', 4 * 3600)


@pytest.mark.parametrize('path', OTHERS)
def test_other_configs_wait_one_hour(repo_root, path):
    dist_cfg = Config.fromfile(osp.join(repo_root, path)).env_cfg.dist_cfg
    assert dist_cfg.timeout == 3600


def test_timeout_reaches_the_process_group(repo_root, tmp_path):
    """One rank (forked, gloo) with torchrun's environment; both paths give the group the LVIS configs' 4 hours."""
    timeouts = run_on_ranks(_probe, 1, (osp.join(repo_root, LVIS[2]), str(tmp_path)), timeout=120, init=False)
    assert timeouts == [(14400.0, 14400.0)]
