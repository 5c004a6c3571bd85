"""A small toy dataset and an untrained small FIBER checkpoint, laid out where ``configs/toy/fiber_toy.py`` reads.

Tests that use :func:`toy_dir` run with that directory as the working directory, so the toy config's relative
``data/toy_shapes/`` paths resolve to the tiny data written here.
"""
import json
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TOY_CONFIG = str(REPO_ROOT / 'configs' / 'toy' / 'fiber_toy.py')
CLASSES = ('circle', 'square', 'triangle', 'diamond', 'cross')


@pytest.fixture(scope='session')
def toy_root(tmp_path_factory) -> Path:
    """``ROOT/data/toy_shapes`` with 4 train, 4 val and 3 grounding images, and its tokenizer."""
    from fiber_mmdet.datasets import generate_toy_dataset
    root = tmp_path_factory.mktemp('toy')
    generate_toy_dataset(str(root / 'data' / 'toy_shapes'), seed=0, num_train_od=4, num_train_vg=4, num_val=4,
                         num_grounding=3)
    return root


@pytest.fixture(scope='session')
def toy_checkpoint(toy_root) -> str:
    """An untrained toy FIBER saved as a plain ``state_dict`` + ``meta`` checkpoint; head ``bias0`` = 0 so that
    every anchor scores about 0.5 and the model returns boxes."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    import fiber_mmdet  # noqa: F401
    cfg = Config.fromfile(TOY_CONFIG)
    cfg.model.language_model.tokenizer = str(toy_root / cfg.tokenizer_dir)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    state_dict = model.state_dict()
    state_dict['bbox_head.head.bias0'] = torch.zeros_like(state_dict['bbox_head.head.bias0'])
    path = str(toy_root / 'untrained_toy.pth')
    torch.save({'state_dict': state_dict, 'meta': {'dataset_meta': {'classes': CLASSES}}}, path)
    return path


@pytest.fixture
def toy_dir(toy_root, monkeypatch) -> Path:
    """Run the test inside the toy root (the toy config's relative paths point there)."""
    monkeypatch.chdir(toy_root)
    return toy_root


def grounding_records(toy_root: Path) -> list:
    """The grounding split's images (mmdet Flickr30k format): file name, caption, phrase spans."""
    with open(toy_root / 'data' / 'toy_shapes' / 'annotations' / 'grounding_val.json') as f:
        content = json.load(f)
    return content['images']


def val_images(toy_root: Path) -> list:
    folder = toy_root / 'data' / 'toy_shapes' / 'images' / 'val'
    return sorted(str(folder / name) for name in os.listdir(folder))


def image_size(path: str):
    from PIL import Image
    with Image.open(path) as im:
        return im.size  # (width, height)

