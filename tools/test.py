# Copyright (c) OpenMMLab. All rights reserved.
# Follows MMDetection 3.3 tools/test.py (Apache-2.0); adapted for fiber_mmdet.
"""Test (and evaluate) a detector checkpoint with MMEngine's Runner, with fiber_mmdet registered.

Differences from MMDetection's ``tools/test.py``: ``fiber_mmdet`` is imported; Runner checkpoints load on
torch >= 2.6; ``--launcher pytorch`` also works on CPU (gloo); no ``--tta``.

A checkpoint written by a run with MMEngine's ``EMAHook`` holds the EMA weights in ``state_dict`` (the raw
weights are in ``ema_state_dict`` under ``module.``); this tool evaluates ``state_dict``.

Results: the metrics are logged and written as JSON next to the log (``WORK_DIR/<timestamp>/<timestamp>.json``,
one key per dataset / split / metric); ``--out`` pickles the raw predictions (all datasets of a multi-dataset
config); ``--format-only PREFIX`` writes the benchmark's own prediction file instead of evaluating (COCO / LVIS
json, e.g. for COCO test-dev).

Example::

    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    python tools/test.py configs/coco/fiber_b_coco_zero_shot.py CKPT --format-only work_dirs/coco/fiber_b
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import inspect

from mmengine.evaluator import Evaluator

from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmdet.registry import METRICS
from mmdet.utils import setup_cache_size_limit_of_dynamo

import fiber_mmdet  # noqa: F401  (registers fiber_mmdet's modules in mmdet's registries)
from fiber_mmdet.engine.checkpoint import check_checkpoint_file
from fiber_mmdet.engine.cli import (add_runner_args, build_runner, compile_evaluation_steps, load_runner_config,
                                    parse_runner_args)
from fiber_mmdet.engine.data_files import check_data_files
from fiber_mmdet.engine.dist import close_distributed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', type=str, help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--format-only',
        metavar='PREFIX',
        help='do not evaluate; write the predictions in the benchmark format to PREFIX.bbox.json (COCO, LVIS; '
        'PREFIX_<dataset>.bbox.json per dataset of a multi-dataset config)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    add_runner_args(parser)
    return parse_runner_args(parser)


def set_format_only(evaluator: dict, prefix: str) -> None:
    """Switch every metric of a test evaluator config to ``format_only`` with an output prefix."""
    if 'metrics' in evaluator:  # one metric per dataset (MultiDatasetsEvaluator and ours)
        named = zip(evaluator['metrics'], evaluator['dataset_prefixes'])
        targets = [(metric, f'{prefix}_{name}') for metric, name in named]
    else:
        targets = [(evaluator, prefix)]
    for metric, out in targets:
        metric_cls = METRICS.get(metric['type'])
        if not any('format_only' in inspect.signature(c.__init__).parameters for c in metric_cls.__mro__[:-1]):
            raise ValueError(f'--format-only: {metric["type"]} has no prediction file format; '
                             'use --out to keep the raw predictions')
        metric.update(format_only=True, outfile_prefix=out)


class DumpBesideEvaluator(Evaluator):
    """Runs a test evaluator and, beside it, mmdet's ``DumpDetResults`` on every sample.

    mmdet's ``tools/test.py`` appends ``DumpDetResults`` to the evaluator's metrics, which a
    ``MultiDatasetsEvaluator`` (ODinW, RefCOCO splits, the toy set) ignores: it pairs metrics with datasets.
    """

    def __init__(self, evaluator: Evaluator, out_file_path: str) -> None:
        super().__init__([DumpDetResults(out_file_path=out_file_path)])
        self.evaluator = evaluator

    def process(self, data_samples, data_batch=None) -> None:
        self.evaluator.process(data_samples, data_batch)
        super().process(data_samples, data_batch)

    def evaluate(self, size: int) -> dict:
        metrics = self.evaluator.evaluate(size)
        super().evaluate(size)  # dumps; reports nothing
        return metrics


def main() -> None:
    args = parse_args()
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {args.out}')

    # Reduce the number of repeated compilations and improve testing speed.
    setup_cache_size_limit_of_dynamo()

    cfg = load_runner_config(args)

    cfg.load_from = args.checkpoint
    if args.format_only:
        set_format_only(cfg.test_evaluator, args.format_only)
    # a missing annotation file or image folder is named with where it comes from, before the model is built
    check_data_files(cfg, ['test'])
    check_checkpoint_file(args.checkpoint)  # a missing, empty or truncated file is named before anything is built

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    runner = build_runner(cfg)
    compile_evaluation_steps(runner)  # with --compile (or the config's `compile`)

    if args.out is not None:
        runner.test_loop.evaluator = DumpBesideEvaluator(runner.test_loop.evaluator, args.out)

    runner.test()
    close_distributed()


if __name__ == '__main__':
    main()
