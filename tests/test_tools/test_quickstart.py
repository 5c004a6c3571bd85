"""tools/misc/quickstart.py trains without validating, so its train_minutes is training alone."""
import glob
import json
import os.path as osp

from ..conftest import TOY_CONFIG
from .conftest import TOOLS, load_tool, run_tool

SHORT = ['train_cfg.max_iters=2', 'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0', 'default_hooks.logger.interval=1',
         'default_hooks.checkpoint.interval=2']


def _validated(toy_dir, work_dir, options):
    run_tool([str(TOOLS / 'train.py'), TOY_CONFIG, '--work-dir', work_dir, '--cfg-options', *SHORT, *options],
             cwd=str(toy_dir))
    scalars, = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        return [r for r in map(json.loads, f) if 'shapes/coco/bbox_mAP_50' in r]


def test_the_quickstart_training_runs_no_validation(toy_dir, tmp_path):
    train_only = list(load_tool('misc/quickstart.py').TRAIN_ONLY)
    # a huge val_interval does not do it: MMEngine's loop validates after the last iteration anyway
    assert len(_validated(toy_dir, str(tmp_path / 'interval'), ['train_cfg.val_interval=1000000'])) == 1
    assert _validated(toy_dir, str(tmp_path / 'train_only'), train_only) == []
    assert osp.isfile(tmp_path / 'train_only' / 'iter_2.pth')
