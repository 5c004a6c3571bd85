# Copyright (c) OpenMMLab. All rights reserved.
# Follows MMDetection 3.3 tools/test.py (Apache-2.0); adapted for fiber_mmdet.
"""Test (and evaluate) a detector checkpoint with MMEngine's Runner, with fiber_mmdet registered.

Differences from MMDetection's ``tools/test.py``: ``fiber_mmdet`` is imported; Runner checkpoints load on
torch >= 2.6; ``--launcher pytorch`` also works on CPU (gloo); no ``--tta``.

A checkpoint written by a run with MMEngine's ``EMAHook`` holds the EMA weights in ``state_dict`` (the raw
weights are in ``ema_state_dict`` under ``module.``); this tool evaluates ``state_dict``.

Example::

    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse


from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmdet.utils import setup_cache_size_limit_of_dynamo

import fiber_mmdet  # noqa: F401  (registers fiber_mmdet's modules in mmdet's registries)
from fiber_mmdet.engine.cli import add_runner_args, build_runner, load_runner_config, parse_runner_args


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', type=str, help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    add_runner_args(parser)
    return parse_runner_args(parser)


def main() -> None:
    args = parse_args()
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {args.out}')

    # Reduce the number of repeated compilations and improve testing speed.
    setup_cache_size_limit_of_dynamo()

    cfg = load_runner_config(args)

    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    runner = build_runner(cfg)

    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))

    runner.test()


if __name__ == '__main__':
    main()
