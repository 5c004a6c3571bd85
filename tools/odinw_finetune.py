"""Run FIBER's ODinW fine-tuning protocol: every dataset x shot setting x seed, each run's best checkpoint tested,
and a table of the test AP (per dataset and shot setting: mean ± std over seeds; the average over datasets).

Example::

    python tools/odinw_finetune.py configs/odinw/fiber_b_odinw13_finetune.py checkpoints/fiber_b_mmdet.pth \\
        --shots 1 3 5 10 0 --seeds 3 30 300 --gpus 8
    # only some datasets; 2 runs at a time on 8 GPUs, 4 GPUs each (1 image per GPU, the original's batch of 4)
    python tools/odinw_finetune.py CONFIG CKPT --datasets Aquarium pothole --gpus 8 --gpus-per-run 4
    # write each run's config for tools/train.py instead of running
    python tools/odinw_finetune.py CONFIG CKPT --shots 1 --seeds 3 --write-configs

``--shots 0`` is the full training set. Results go to ``WORK_DIR/<dataset>/<k>shot_seed<s>/`` (``result.json``,
the training log, ``test/``) and ``WORK_DIR/summary.{json,md}``. Running the same command again skips the runs
that have a ``result.json``: an interrupted protocol resumes where it stopped, and failed runs are retried.

On SIGTERM or SIGUSR1 (a pre-emption) the running trainings get SIGTERM, save a checkpoint after their current
iteration and stop; the protocol then exits with status 75 (``fiber_mmdet.engine.hooks.PREEMPTED_EXIT_CODE``).
Run again, those runs resume from their checkpoints.
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a source checkout

import fiber_mmdet  # noqa: E402,F401  (registers fiber_mmdet's modules)
from fiber_mmdet.engine.data_files import check_data_files  # noqa: E402
from fiber_mmdet.engine.finetune_protocol import (build_run_config, plan_runs, protocol_datasets,  # noqa: E402
                                                  resolve_gpus, run_protocol)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a fine-tuning protocol config (configs/odinw/fiber_b_odinw13_finetune.py)')
    parser.add_argument('checkpoint', help='the checkpoint every run starts from (converted FIBER-B)')
    parser.add_argument('--work-dir', help='default: work_dirs/<config name>')
    parser.add_argument('--datasets', nargs='+', help='default: every dataset of the config')
    parser.add_argument('--shots', nargs='+', type=int, default=[1, 3, 5, 10, 0],
                        help='k images per category; 0 = the full training set (default: %(default)s)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[3, 30, 300], help='default: %(default)s')
    parser.add_argument('--gpus', type=int, default=None,
                        help='GPUs to use, the first ones of those this process sees (CUDA_VISIBLE_DEVICES is '
                        'respected); 0 = CPU (default: every visible GPU, the CPU where there is none)')
    parser.add_argument('--gpus-per-run', type=int, default=None,
                        help='GPUs of one run (the global batch is divided over them); --gpus / --gpus-per-run '
                        'runs go at a time (default: 1 on one GPU, else 4 if it divides --gpus, else --gpus)')
    parser.add_argument('--port', type=int, default=29600, help='first torchrun master port (default: %(default)s)')
    parser.add_argument('--write-configs', action='store_true',
                        help="only write each run's config.py (for tools/train.py) and stop")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.gpus = resolve_gpus(args.gpus, torch.cuda.device_count(), os.environ)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    root = args.work_dir or osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    datasets = args.datasets or list(protocol_datasets(cfg))
    gpus_per_run = args.gpus_per_run or (1 if args.gpus <= 1 else 4 if args.gpus % 4 == 0 else args.gpus)
    runs = plan_runs(datasets, args.shots, args.seeds, root)
    # every run's data is checked (and the checkpoint) before the first one starts
    for dataset in datasets:
        run_cfg = build_run_config(cfg, dataset, args.shots[0], args.seeds[0], root, args.checkpoint,
                                   processes=max(1, gpus_per_run if args.gpus else 1))
        check_data_files(run_cfg, ['train', 'val', 'test'])
    if args.write_configs:
        for run in runs:
            build_run_config(cfg, run.dataset, run.shots, run.seed, run.work_dir, args.checkpoint,
                             processes=max(1, gpus_per_run if args.gpus else 1)).dump(
                                 _makedirs(osp.join(run.work_dir, 'config.py')))
            print(osp.join(run.work_dir, 'config.py'))
        return 0
    run_protocol(cfg, args.checkpoint, root, datasets, args.shots, args.seeds, gpus=args.gpus,
                 gpus_per_run=gpus_per_run, base_port=args.port, log=lambda line: print(line, flush=True))
    print(f'summary: {osp.join(root, "summary.md")}')
    with open(osp.join(root, 'summary.md'), encoding='utf-8') as f:
        print(f.read())
    return 0


def _makedirs(path: str) -> str:
    os.makedirs(osp.dirname(path), exist_ok=True)
    return path


if __name__ == '__main__':
    sys.exit(main())
