"""The AMP autocast type of the training recipes is one key, ``optim_wrapper.dtype`` (float16 as the original;
bfloat16 recommended on Ampere and newer), that ``--cfg-options`` overrides and the built wrapper uses."""
import argparse
import os.path as osp

import pytest
import torch
from mmengine.optim import AmpOptimWrapper, build_optim_wrapper
from mmengine.optim.optimizer import amp_optimizer_wrapper

from fiber_mmdet.engine import NonFiniteSkipOptimWrapper
from fiber_mmdet.engine.cli import add_runner_args, amp_or_fp32, load_runner_config
from ..test_engine.conftest import ToyGroundingModel

RECIPES = ['configs/coco/fiber_b_coco_finetune.py', 'configs/lvis/fiber_b_lvis_finetune.py',
           'configs/refcoco/fiber_b_v3_refcoco_finetune.py', 'configs/odinw/fiber_b_odinw13_finetune.py',
           'configs/custom/fiber_b_custom_finetune.py', 'configs/fiber_fine_pretrain.py']


def _load(repo_root, path, *options):
    """The config as tools/train.py reads it, with ``--cfg-options``."""
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--work-dir')
    add_runner_args(parser)
    argv = [osp.join(repo_root, path)] + (['--cfg-options', *options] if options else [])
    return load_runner_config(parser.parse_args(argv))


@pytest.mark.parametrize('path', RECIPES)
def test_recipes_build_an_amp_wrapper_of_the_configured_dtype(repo_root, path, monkeypatch):
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)  # the GPU-only assertion
    model = ToyGroundingModel()
    default = _load(repo_root, path)
    assert default.optim_wrapper.dtype == 'float16' and default.optim_wrapper.loss_scale == 'dynamic'
    wrapper = build_optim_wrapper(model, default.optim_wrapper)
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype is torch.float16
    assert wrapper._scale_update_param is None  # dynamic loss scaling

    bf16 = _load(repo_root, path, 'optim_wrapper.dtype=bfloat16')
    wrapper = build_optim_wrapper(model, bf16.optim_wrapper)
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype is torch.bfloat16
    assert wrapper._scale_update_param == 1.0  # no loss scaling: bfloat16 has float32's range


def test_without_cuda_the_recipe_trains_in_fp32_whatever_the_dtype(repo_root, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = _load(repo_root, RECIPES[0], 'optim_wrapper.dtype=bfloat16')
    assert amp_or_fp32(cfg)
    assert 'dtype' not in cfg.optim_wrapper and 'loss_scale' not in cfg.optim_wrapper
    assert type(build_optim_wrapper(ToyGroundingModel(), cfg.optim_wrapper)) is NonFiniteSkipOptimWrapper
