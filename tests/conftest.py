"""Shared test fixtures: repository paths, an offline RoBERTa-style tokenizer, the tiny FIBER config, and a small
toy dataset with an untrained toy FIBER checkpoint laid out where ``configs/toy/fiber_toy.py`` reads.

Tests that use :func:`toy_dir` run with the toy root as the working directory, so the toy config's relative
``data/toy_shapes/`` paths resolve to the tiny data written here.
"""
import json
import os
import os.path as osp
from pathlib import Path

import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_CONFIG = osp.join(REPO_ROOT, 'configs', 'toy', 'fiber_toy.py')
TOY_CLASSES = ('circle', 'square', 'triangle', 'diamond', 'cross')
TOKENIZER_TEXT = [
    'person. bicycle. car. motorcycle. airplane. bus. train. truck. boat. traffic light',
    'the small red triangle. a blue circle left of a green square. a yellow star',
    'a man riding a horse next to a black dog on the beach',
    'two people playing frisbee in the park with a white dog',
]


def reference_fixture_root():
    """``$FIBER_REFERENCE_FIXTURES`` or ``../shared/fixtures/reference`` next to the repository."""
    for path in (os.environ.get('FIBER_REFERENCE_FIXTURES'),
                 osp.join(osp.dirname(REPO_ROOT), 'shared', 'fixtures', 'reference')):
        if path and osp.isdir(path):
            return path
    return None


@pytest.fixture(scope='session')
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope='session')
def reference_root():
    """Directory of the reference fixtures; the test is skipped (with the reason) where there is none."""
    root = reference_fixture_root()
    if root is None:
        pytest.skip('reference fixtures not found: set FIBER_REFERENCE_FIXTURES or provide '
                    '../shared/fixtures/reference next to the repository')
    return root


@pytest.fixture(scope='session')
def tokenizer_dir(tmp_path_factory):
    """A byte-level BPE RoBERTa tokenizer trained on a few captions (loaded like ``roberta-base``)."""
    from fiber_mmdet.utils import train_roberta_tokenizer
    out = str(tmp_path_factory.mktemp('tokenizer'))
    return train_roberta_tokenizer(TOKENIZER_TEXT * 10, out, vocab_size=400)


@pytest.fixture(scope='session')
def tiny_model_cfg(tokenizer_dir):
    """The model dict of ``configs/_base_/models/fiber_tiny.py`` with the test tokenizer."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', 'models', 'fiber_tiny.py'))
    cfg.model.language_model.tokenizer = tokenizer_dir
    return cfg.model


@pytest.fixture(scope='session', autouse=True)
def _register_modules():
    from mmdet.utils import register_all_modules
    import fiber_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)

@pytest.fixture(scope='session')
def toy_root(tmp_path_factory) -> Path:
    """``ROOT/data/toy_shapes`` with 4 train, 4 val and 3 grounding images, and its tokenizer."""
    from fiber_mmdet.datasets import generate_toy_dataset
    root = tmp_path_factory.mktemp('toy')
    generate_toy_dataset(str(root / 'data' / 'toy_shapes'), seed=0, num_train_od=4, num_train_od_attr=4,
                         num_train_vg=4, num_val=4, num_grounding=3)
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
    torch.save({'state_dict': state_dict, 'meta': {'dataset_meta': {'classes': TOY_CLASSES}}}, path)
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

