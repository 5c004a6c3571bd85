"""The AMP autocast type of the training recipes is one key, ``optim_wrapper.dtype`` (float16 as the original;
bfloat16 recommended on Ampere and newer), that ``--cfg-options`` overrides and the built wrapper uses; their AMP
wrapper also runs on the CPU: ``tools/train.py`` keeps it there in bfloat16 and trains float16 configs (slow on
CPUs) and MMEngine's own ``AmpOptimWrapper`` (GPU only) in fp32."""
import argparse
import logging
import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper

from fiber_mmdet.engine import NonFiniteSkipAmpOptimWrapper, NonFiniteSkipOptimWrapper
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
def test_recipes_build_an_amp_wrapper_of_the_configured_dtype(repo_root, path):
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


def _warnings_of(fn, *args) -> tuple:
    """``fn(*args)`` and the messages it logged to MMEngine's current logger."""
    logger, records = MMLogger.get_current_instance(), []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        result = fn(*args)
    finally:
        logger.removeHandler(handler)
    return result, [(r.levelno, r.getMessage()) for r in records]


def test_without_cuda_bfloat16_keeps_amp(repo_root, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    model = ToyGroundingModel()
    cfg = _load(repo_root, RECIPES[0], 'optim_wrapper.dtype=bfloat16')
    assert _warnings_of(amp_or_fp32, cfg) == (False, [])
    assert cfg.optim_wrapper.type == 'NonFiniteSkipAmpOptimWrapper' and cfg.optim_wrapper.dtype == 'bfloat16'
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(wrapper) is NonFiniteSkipAmpOptimWrapper and wrapper.cast_dtype is torch.bfloat16
    assert wrapper.loss_scaler.get_scale() == 1.0
    with wrapper.optim_context(model):  # torch.autocast('cpu', bfloat16)
        assert torch.get_autocast_dtype('cpu') is torch.bfloat16 and torch.is_autocast_enabled('cpu')
        assert model.language_model(torch.ones(1, 4)).dtype is torch.bfloat16


def test_without_cuda_float16_trains_in_fp32_and_says_so(repo_root, monkeypatch):
    """float16 autocast runs many times slower than fp32 on CPUs without float16 instructions."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = _load(repo_root, RECIPES[0])
    assert _warnings_of(amp_or_fp32, cfg) == (True, [(logging.WARNING, (
        'training in fp32 with NonFiniteSkipOptimWrapper on this machine without CUDA: float16 autocast '
        '(optim_wrapper.dtype=float16) is many times slower than fp32 on CPUs; optim_wrapper.dtype=bfloat16 keeps '
        'AMP on the CPU'))])
    assert 'dtype' not in cfg.optim_wrapper and 'loss_scale' not in cfg.optim_wrapper
    assert type(build_optim_wrapper(ToyGroundingModel(), cfg.optim_wrapper)) is NonFiniteSkipOptimWrapper


def test_without_cuda_mmengine_amp_wrapper_trains_in_fp32_and_says_so(repo_root, monkeypatch):
    """MMEngine's ``AmpOptimWrapper`` asserts a GPU when it is built: on the CPU it becomes ``OptimWrapper``."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = _load(repo_root, RECIPES[0], 'optim_wrapper.type=AmpOptimWrapper', 'optim_wrapper.dtype=bfloat16')
    assert _warnings_of(amp_or_fp32, cfg) == (True, [(logging.WARNING, (
        "training in fp32 with OptimWrapper on this machine without CUDA: MMEngine's AmpOptimWrapper needs CUDA; "
        'NonFiniteSkipAmpOptimWrapper with dtype=bfloat16 runs AMP on the CPU'))])
    assert 'dtype' not in cfg.optim_wrapper and 'loss_scale' not in cfg.optim_wrapper
    assert type(build_optim_wrapper(ToyGroundingModel(), cfg.optim_wrapper)) is OptimWrapper
