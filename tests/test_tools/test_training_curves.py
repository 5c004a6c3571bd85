"""A toy training run sends its losses and validation metrics to MMEngine's visualisation backends
(``configs/_base_/default_runtime.py``): scalars.json always, TensorBoard event files when it is installed."""
import glob
import importlib.util
import json
import os.path as osp

from mmengine.config import Config

from ..conftest import TOY_CONFIG
from .conftest import TOOLS, run_tool


def test_toy_run_writes_loss_curve_and_metrics_to_every_backend(toy_dir, tmp_path):
    backends = [b['type'] for b in Config.fromfile(TOY_CONFIG).visualizer.vis_backends]
    has_tensorboard = importlib.util.find_spec('tensorboard') is not None
    assert backends == ['LocalVisBackend'] + ['TensorboardVisBackend'] * has_tensorboard
    assert has_tensorboard  # requirements.txt installs it, so the TensorBoard path is tested here
    work_dir = str(tmp_path / 'work')
    run_tool([str(TOOLS / 'train.py'), TOY_CONFIG, '--work-dir', work_dir, '--cfg-options',
              'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'train_dataloader.batch_size=2',
              'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
              'val_dataloader.num_workers=0', 'default_hooks.logger.interval=1',
              'default_hooks.checkpoint.interval=2'], cwd=str(toy_dir))
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert len(scalars) == 1
    with open(scalars[0]) as f:
        records = [json.loads(line) for line in f]
    losses = [r for r in records if 'loss' in r]
    assert [r['iter'] for r in losses] == [1, 2] and all(r['loss'] > 0 and 'lr' in r for r in losses)
    # validation at iteration 2, logged at its iteration (not at "epoch 0") so that metrics and losses share an axis
    metrics = [r for r in records if 'novel_grounding/flickr30k/Recall@1_all' in r]
    assert len(metrics) == 1 and metrics[0]['step'] == 2
    events = glob.glob(osp.join(work_dir, '*', 'vis_data', 'events.out.tfevents.*'))
    assert len(events) == 1 and osp.getsize(events[0]) > 100
