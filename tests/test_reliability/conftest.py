"""Tiny toy data (written by the tests) and helpers to run the tools on ``configs/toy/fiber_toy.py``, for the
fault-injection tests."""
import glob
import logging
import os
import os.path as osp
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
TOY_CONFIG = str(REPO_ROOT / 'configs' / 'toy' / 'fiber_toy.py')


def toy_options(data_root: str, **extra) -> List[str]:
    """``--cfg-options`` that point the toy config at ``data_root`` and shrink it to a few CPU seconds."""
    options = dict(data_root=data_root.rstrip('/') + '/', **{
        'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False, 'test_dataloader.num_workers': 0,
        'val_dataloader.num_workers': 0, 'train_cfg.max_iters': 2, 'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1, 'log_processor.window_size': 1})
    options.update(extra)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


def run_tool_status(args: List[str], cwd: str, timeout: int = 300, extra_env: Dict[str, str] = None) -> Tuple[int, str]:
    """Run ``python tools/...`` as a user does; returns the exit status and the output (stdout + stderr).
    ``extra_env['PYTHONPATH']`` is added to the path, after the repository."""
    env = dict(os.environ)
    extra = dict(extra_env or {})
    paths = [str(REPO_ROOT), extra.pop('PYTHONPATH', ''), env.get('PYTHONPATH', '')]
    env['PYTHONPATH'] = os.pathsep.join(p for p in paths if p)
    env.setdefault('OMP_NUM_THREADS', '1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # the tools must not need it
    env.update(extra)
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return result.returncode, result.stdout


class Records(logging.Handler):
    """Keeps the messages logged to a logger it is added to (MMLogger's own handlers write to the terminal)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: List[str] = []

    def emit(self, record) -> None:
        self.messages.append(record.getMessage())


def checkpoints_in(work_dir: str) -> List[str]:
    return sorted(glob.glob(osp.join(work_dir, '*.pth')))


def corrupt_copy(toy_root: str, tmp_path, split: str) -> Tuple[str, str]:
    """A copy of the toy data whose first image of ``split`` is cut to its first 100 bytes; returns the copy's
    root and that image's path."""
    root = str(tmp_path / 'toy_corrupt')
    shutil.copytree(toy_root, root)
    folder = osp.join(root, 'images', split)
    path = osp.join(folder, sorted(os.listdir(folder))[0])
    with open(path, 'rb') as f:
        head = f.read(100)
    with open(path, 'wb') as f:
        f.write(head)
    return root, path


@pytest.fixture(scope='session')
def toy_root(tmp_path_factory) -> str:
    """A toy dataset of 8 + 8 training images, 4 validation and 4 grounding images, with its tokenizer."""
    from fiber_mmdet.datasets.synthetic_shapes import generate_toy_dataset
    out = str(tmp_path_factory.mktemp('toy_shapes'))
    generate_toy_dataset(out, seed=1, num_train_od=8, num_train_od_attr=4, num_train_vg=8, num_val=4, num_grounding=4)
    return out


@pytest.fixture(scope='session')
def toy_cfg(toy_root):
    """``configs/toy/fiber_toy.py`` read with its data_root moved to the test data (as the tools do)."""
    from mmengine.config import Config

    from fiber_mmdet.engine.data_root import override_data_root
    cfg = Config.fromfile(TOY_CONFIG)
    override_data_root(cfg, 'data_root', toy_root + '/')
    return cfg


@pytest.fixture(scope='session')
def toy_checkpoint(toy_cfg, tmp_path_factory) -> str:
    """A checkpoint of the toy model at its initialisation, in the layout the Runner writes (``state_dict``,
    ``meta``, ``message_hub`` with a ``HistoryBuffer``)."""
    from mmengine.logging import HistoryBuffer

    from mmdet.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(toy_cfg.model)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('toy_ckpt') / 'toy_init.pth')
    history = HistoryBuffer()
    history.update(1.5)
    torch.save(dict(meta=dict(iter=0), state_dict=model.state_dict(),
                    message_hub=dict(log_scalars={'train/loss': history})), path)
    return path
