"""Shared test fixtures: repository paths, an offline RoBERTa-style tokenizer, the tiny FIBER config."""
import os
import os.path as osp

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
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
