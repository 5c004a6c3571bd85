"""Checkpoints are checked when loaded into FIBER, whatever loads them, with the first keys and the likely cause."""
import copy
import os
import subprocess
import sys

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import load_checkpoint

from mmdet.registry import MODELS
from fiber_mmdet.utils.checkpoint_fit import CheckpointMismatchError
from .conftest import Records, REPO_ROOT


@pytest.fixture(scope='module')
def tiny_model(tiny_model_cfg):
    torch.manual_seed(0)
    return MODELS.build(copy.deepcopy(tiny_model_cfg))


def _build(tiny_model_cfg, **backbone):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.backbone.update(backbone)
    return MODELS.build(cfg)


def test_own_state_dict_loads_through_torch_and_mmengine(tiny_model, tmp_path):
    state = tiny_model.state_dict()
    tiny_model.load_state_dict(state)
    path = str(tmp_path / 'own.pth')
    torch.save(dict(state_dict={'module.' + k: v for k, v in state.items()}), path)  # DDP-style prefix
    load_checkpoint(tiny_model, path, map_location='cpu')  # mmengine strips module.


def test_random_state_dict_is_not_a_fiber_checkpoint(tiny_model):
    with pytest.raises(CheckpointMismatchError, match=r"not a fiber_mmdet FIBER checkpoint.*'conv.weight'"):
        tiny_model.load_state_dict({'conv.weight': torch.zeros(3)}, strict=False)


def test_original_unconverted_checkpoint_names_the_converter(tiny_model, tmp_path):
    path = str(tmp_path / 'original.pth')
    torch.save({'model': {'backbone.body.patch_embed.proj.weight': torch.zeros(2)}}, path)
    with pytest.raises(CheckpointMismatchError, match='fiber_to_mmdet.py'):
        load_checkpoint(tiny_model, path, map_location='cpu')


def test_v2_checkpoint_into_v3_model_says_so(tiny_model_cfg, tiny_model):
    v3 = _build(tiny_model_cfg, i2t_query_norm=True)
    with pytest.raises(CheckpointMismatchError, match=r'missing.*query_norm.*FIBER v3.*i2t_query_norm=False'):
        v3.load_state_dict(tiny_model.state_dict(), strict=False)
    with pytest.raises(CheckpointMismatchError, match=r'unexpected.*query_norm.*checkpoint is FIBER v3'):
        tiny_model.load_state_dict(v3.state_dict())


def test_checkpoint_of_another_size_names_shapes(tiny_model_cfg, tiny_model):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.neck.out_channels = 32
    cfg.bbox_head.update(in_channels=32, feat_channels=32)
    other = MODELS.build(cfg)
    with pytest.raises(CheckpointMismatchError, match=r"of another size \(first: \['neck\..*: checkpoint \(32, "
                       r'.*another size or depth'):
        load_checkpoint_from_state(tiny_model, other.state_dict())


def load_checkpoint_from_state(model, state):
    from mmengine.runner.checkpoint import load_state_dict
    load_state_dict(model, state, strict=False)


def test_partial_loading_on_purpose_logs_counts(tiny_model_cfg, tiny_model):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.checkpoint_fit = dict(allow_partial=True)
    model = MODELS.build(cfg)
    state = {k: v for k, v in tiny_model.state_dict().items() if not k.startswith('bbox_head.')}
    state['extra.weight'] = torch.zeros(1)
    records = Records()
    MMLogger.get_current_instance().addHandler(records)
    try:
        load_checkpoint_from_state(model, state)
    finally:
        MMLogger.get_current_instance().removeHandler(records)
    assert torch.equal(model.backbone.patch_embed.projection.weight, tiny_model.backbone.patch_embed.projection.weight)
    total = len(tiny_model.state_dict())
    out = '\n'.join(records.messages)
    missing = total - len(state) + 1
    assert f'{len(state) - 1} of {total} tensors loaded; {missing} missing' in out and '1 unexpected' in out


def test_runner_checkpoint_loads_weights_only_after_import_alone(toy_checkpoint, toy_cfg, tmp_path):
    """`import fiber_mmdet` is all it takes for torch's weights-only load (and mmdet's init_detector) to read a
    Runner checkpoint (HistoryBuffer, numpy) -- in a fresh process without any other call. (``palette`` is
    given because mmdet's own palette lookup cannot read the toy config's ConcatDataset test set.)"""
    cfg_path = str(tmp_path / 'toy.py')
    toy_cfg.dump(cfg_path)
    code = ('import torch, fiber_mmdet\n'
            f'ckpt = torch.load({toy_checkpoint!r}, map_location="cpu")\n'
            'from mmdet.apis import init_detector\n'
            f'model = init_detector({cfg_path!r}, {toy_checkpoint!r}, device="cpu", palette="random")\n'
            'print("loaded", len(ckpt["state_dict"]), type(model).__name__)\n')
    out = subprocess.run([sys.executable, '-c', code], cwd=str(REPO_ROOT), capture_output=True, text=True,
                         timeout=300, env={**os.environ, 'PYTHONPATH': str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'loaded' in out.stdout and 'FIBER' in out.stdout
