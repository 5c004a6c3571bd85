# Copyright (c) OpenMMLab. All rights reserved.
# Follows MMDetection 3.3 tools/train.py (Apache-2.0); adapted for fiber_mmdet.
"""Train a detector with MMEngine's Runner, with fiber_mmdet registered.

Differences from MMDetection's ``tools/train.py``: ``fiber_mmdet`` is imported (its modules, hooks and
optimizer constructor register even if the config has no ``custom_imports``); Runner checkpoints load on
torch >= 2.6 (``--resume``, ``load_from``); ``--launcher pytorch`` also works on CPU (gloo); without
CUDA, ``NonFiniteSkipAmpOptimWrapper`` with ``dtype='bfloat16'`` trains with AMP on the CPU, while float16 (the
recipes' default, many times slower than fp32 on CPUs) and MMEngine's own ``AmpOptimWrapper`` (GPU only) train in
fp32 and say so.

Checkpoints are written atomically and ``--resume`` skips (and names) a newest checkpoint that does not load; on
SIGTERM or SIGUSR1 training saves a checkpoint after the current iteration and exits with status 75
(``fiber_mmdet.engine.hooks.PREEMPTED_EXIT_CODE``), to be continued with ``--resume``
(:func:`fiber_mmdet.engine.cli.use_reliable_training`).

Example::

    python tools/train.py configs/coco/fiber_b_coco.py --amp
    python tools/train.py CONFIG --resume                  # resume from the latest checkpoint in work_dir
    bash tools/dist_train.sh CONFIG 8 --auto-scale-lr
"""
import argparse

from mmengine.logging import print_log

from mmdet.utils import setup_cache_size_limit_of_dynamo

import fiber_mmdet  # noqa: F401  (registers fiber_mmdet's modules in mmdet's registries)
from fiber_mmdet.engine.checkpoint import check_checkpoint_file, find_resumable_checkpoint
from fiber_mmdet.engine.cli import (add_runner_args, amp_or_fp32, build_runner, load_runner_config, parse_runner_args,
                                    use_reliable_training)
from fiber_mmdet.engine.data_files import check_data_files
from fiber_mmdet.engine.dist import close_distributed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', default=False, help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not specify, try to auto resume from the '
        'latest checkpoint in the work directory.')
    add_runner_args(parser)
    return parse_runner_args(parser)


def main() -> None:
    args = parse_args()

    # Reduce the number of repeated compilations and improve training speed.
    setup_cache_size_limit_of_dynamo()

    cfg = load_runner_config(args)

    if args.amp:
        cfg.optim_wrapper.type = 'NonFiniteSkipAmpOptimWrapper'  # AmpOptimWrapper that skips non-finite steps
        cfg.optim_wrapper.loss_scale = 'dynamic'

    amp_or_fp32(cfg)
    use_reliable_training(cfg)  # atomic checkpoints, mid-epoch resume, a checkpoint and exit 75 on SIGTERM/SIGUSR1

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or "auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your configuration file.')

    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        # the newest checkpoint that loads: a truncated or unreadable newer one is named and skipped
        found = find_resumable_checkpoint(cfg.work_dir, log=lambda line: print_log(line, logger='current'))
        if found is None:
            print_log(f'--resume: no checkpoint in {cfg.work_dir}; training starts from the beginning',
                      logger='current')
        cfg.resume = found is not None
        cfg.load_from = found
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # a missing annotation file or image folder is named with where it comes from, before anything is built
    check_data_files(cfg, ['train', 'val'] if cfg.get('val_cfg') else ['train'])
    if cfg.get('load_from'):  # a missing, empty or truncated checkpoint is named before anything is built
        check_checkpoint_file(cfg.load_from)
    runner = build_runner(cfg)
    runner.train()
    close_distributed()


if __name__ == '__main__':
    main()
