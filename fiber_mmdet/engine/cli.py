"""What ``tools/train.py`` and ``tools/test.py`` share: the common command-line options, config loading and
runner construction (with the checkpoint and CPU-distributed fixes)."""
import argparse
import os
import os.path as osp
from typing import List

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .checkpoint import register_checkpoint_safe_globals
from .data_root import override_data_root
from .dist import setup_cpu_distributed


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local-rank`` as in MMDetection's tools, and ``--compile``."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair in xxx=yyy format will be merged '
        'into config file. If the value to be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" Note that the quotation marks are '
        'necessary and that no white space is allowed.')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    parser.add_argument(
        '--compile', action='store_true',
        help="torch.compile the model's steps (the config's `compile`: True or torch.compile's arguments); "
        'see docs/speed.md for what it costs and buys')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_runner_config(args: argparse.Namespace) -> Config:
    """The config with ``--cfg-options`` merged (a ``data_root`` override moves every path built from it, see
    :func:`override_data_root`), the launcher set and ``work_dir`` resolved (CLI > config >
    ``./work_dirs/<config name>``); also allow-lists the globals of our own checkpoints."""
    register_checkpoint_safe_globals()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        options = dict(args.cfg_options)
        for key in [k for k in options if '.' not in k and k.endswith('data_root')]:
            # paths were built from the root when the config was parsed: move them all along
            override_data_root(cfg, key, options.pop(key))
        cfg.merge_from_dict(options)
    if getattr(args, 'compile', False) and not cfg.get('compile'):
        cfg.compile = True
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


# an AMP wrapper -> the same without AMP, for a CPU where AMP would not run (well)
_FP32_WRAPPERS = {'AmpOptimWrapper': 'OptimWrapper', 'NonFiniteSkipAmpOptimWrapper': 'NonFiniteSkipOptimWrapper'}


def amp_or_fp32(cfg: Config) -> bool:
    """Keep the config's AMP optimizer wrapper where it can run, and run well; otherwise train in fp32 with its
    non-AMP counterpart and say so. Returns whether the config was changed.

    With CUDA nothing changes. Without it: ``NonFiniteSkipAmpOptimWrapper`` runs AMP on the CPU and is kept with
    ``dtype='bfloat16'`` (or None: bfloat16 on the CPU); with ``'float16'`` (the recipes') it trains in fp32,
    because CPUs without float16 instructions run float16 autocast many times slower than float32 (torch 2.14 on
    an AVX-512 CPU, forward and backward: a 3x3 convolution of 256 channels ~90x, a 1024-wide linear layer ~6x,
    where bfloat16 takes ~0.7x float32's time). MMEngine's own ``AmpOptimWrapper`` asserts a GPU when it is built:
    fp32 too."""
    import torch
    from mmengine.logging import print_log
    wrapper = cfg.get('optim_wrapper') or {}
    kind = wrapper.get('type')
    if kind not in _FP32_WRAPPERS or torch.cuda.is_available():
        return False
    fp32 = _FP32_WRAPPERS[kind]
    if kind == 'NonFiniteSkipAmpOptimWrapper':
        dtype = wrapper.get('dtype')
        if dtype not in ('float16', torch.float16):
            return False  # bfloat16 (None: torch's CPU default, bfloat16) autocast runs well on CPUs
        why = (f'float16 autocast (optim_wrapper.dtype={dtype}) is many times slower than fp32 on CPUs; '
               f'optim_wrapper.dtype=bfloat16 keeps AMP on the CPU')
    else:
        why = ("MMEngine's AmpOptimWrapper needs CUDA; NonFiniteSkipAmpOptimWrapper with dtype=bfloat16 runs AMP "
               'on the CPU')
    print_log(f'training in fp32 with {fp32} on this machine without CUDA: {why}', logger='current', level=30)
    wrapper.type = fp32
    for key in ('loss_scale', 'dtype', 'use_fsdp'):  # AmpOptimWrapper's own arguments
        wrapper.pop(key, None)
    return True


# a config's own checkpoint hook / epoch loop -> the same with fiber_mmdet's safe saving / mid-epoch resume
_RELIABLE_TYPES = {'CheckpointHook': 'AtomicCheckpointHook', 'BestOnTieCheckpointHook': 'AtomicCheckpointHook',
                   'EpochBasedTrainLoop': 'ResumableEpochBasedTrainLoop'}


def use_reliable_training(cfg: Config) -> List[str]:
    """Train with the pieces that make checkpoints safe and runs pre-emptible, whatever the config names.

    ``default_hooks.checkpoint`` of type ``CheckpointHook`` / ``BestOnTieCheckpointHook`` becomes
    ``AtomicCheckpointHook`` (same arguments: atomic writes, old checkpoints removed only after the new one is
    saved); ``train_cfg`` of type ``EpochBasedTrainLoop`` (or ``by_epoch=True``) becomes
    ``ResumableEpochBasedTrainLoop`` (same arguments, resumes mid-epoch); a ``PreemptionHook`` is added to
    ``default_hooks`` when the config has none. Each change is logged; returns them.
    """
    from mmengine.logging import print_log
    changes = []
    hooks = cfg.get('default_hooks') or {}
    checkpoint = hooks.get('checkpoint')
    if checkpoint is not None and checkpoint.get('type') in ('CheckpointHook', 'BestOnTieCheckpointHook'):
        changes.append(f'default_hooks.checkpoint.type: {checkpoint["type"]} -> AtomicCheckpointHook')
        checkpoint['type'] = 'AtomicCheckpointHook'
    train_cfg = cfg.get('train_cfg')
    if train_cfg is not None and (train_cfg.get('type') == 'EpochBasedTrainLoop'
                                  or ('type' not in train_cfg and train_cfg.get('by_epoch'))):
        changes.append(f'train_cfg.type: {train_cfg.get("type", "by_epoch=True")} -> ResumableEpochBasedTrainLoop')
        train_cfg.pop('by_epoch', None)
        train_cfg['type'] = 'ResumableEpochBasedTrainLoop'
    configured = [h.get('type') for h in list(hooks.values()) + list(cfg.get('custom_hooks') or []) if h]
    if 'PreemptionHook' not in configured:
        changes.append("default_hooks.preemption = dict(type='PreemptionHook')")
        cfg.setdefault('default_hooks', {})['preemption'] = dict(type='PreemptionHook')
    for change in changes:
        print_log(f'reliable training: {change}', logger='current')
    return changes


def build_runner(cfg: Config) -> Runner:
    """``Runner.from_cfg`` (or the config's ``runner_type``), after making ``--launcher pytorch`` work on CPU."""
    setup_cpu_distributed(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def compile_evaluation_steps(runner: Runner) -> bool:
    """With the config's ``compile`` (True or ``torch.compile`` arguments), compile the model's ``val_step`` and
    ``test_step`` as MMEngine's Runner compiles ``train_step`` for training. FIBER's prompt planning, text cache
    and post-processing stay eager inside (``torch.compiler.disable``); the fused backbone, neck and head run as
    compiled graphs. Returns whether anything was compiled."""
    import torch
    from mmengine.logging import print_log
    options = runner.cfg.get('compile')
    if not options:
        return False
    options = {} if options is True else dict(options)
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    for step in ('val_step', 'test_step'):
        setattr(model, step, torch.compile(getattr(model, step), **options))
    print_log(f'val_step and test_step compiled with torch.compile({options}); the first batches of each image '
              'size take the compile time', logger='current')
    return True
