"""The embedded default, end to end on a CPU: generate the built-in toy dataset (if missing), train the small
FIBER on it with the real recipe's pipeline, losses and evaluators, evaluate, and print one summary line.

Usage:
    python tools/misc/quickstart.py [--work-dir work_dirs/quickstart] [--config configs/toy/fiber_toy_attribute_first.py]

The data lives where the toy config expects it (its ``data_root``, ``data/toy_shapes``).

It also writes ``WORK_DIR/predictions.png``: held-out toy images with the predicted boxes and phrases (detection
prompts, and captions of colour-shape pairs never seen in training).

Output ends with ``toy summary: AP50=... grounding_acc_novel=... train_minutes=... (grounding_acc_unique_colour=...
step_seconds=...)``: COCO box AP50 on the held-out detection images; phrase-grounding accuracy (top-1 box IoU >=
0.5, i.e. Recall@1) on captions whose colour-shape combinations never occur in training, in images where a seen
object of the same shape (and often one of the same colour) stands beside each named one; the same on version
2's split, where each image holds held-out pairs only, one per colour; the mean training step.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

from mmengine.config import Config

from fiber_mmdet.datasets.synthetic_shapes import DATASET_VERSION, toy_dataset_version

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the recipe that reads the colour (attribute grounding 0.84 against fiber_toy.py's 0.50, at AP50 0.58 against 0.70)
CONFIG = osp.join(REPO_ROOT, 'configs', 'toy', 'fiber_toy_attribute_first.py')
# MMEngine's IterBasedTrainLoop validates after the last iteration whatever val_interval says; without a validation
# loop, train_minutes is training alone and the model is evaluated once, by tools/test.py
TRAIN_ONLY = ('val_dataloader=None', 'val_cfg=None', 'val_evaluator=None')


def run(cmd) -> None:
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def mean_step_seconds(work_dir: str) -> float:
    """Mean seconds per training iteration of the latest run in ``work_dir`` (MMEngine's logged ``time``, each
    value a mean over the logger's window), without the first window (start-up)."""
    runs = sorted(glob.glob(osp.join(work_dir, '2*', 'vis_data', 'scalars.json')), key=os.path.getmtime)
    with open(runs[-1]) as f:
        times = [r['time'] for r in map(json.loads, f) if 'time' in r and 'loss' in r]
    return sum(times[1:]) / max(len(times) - 1, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default=osp.join(REPO_ROOT, 'work_dirs', 'quickstart'))
    parser.add_argument('--config', default=CONFIG, help='a toy config (default: configs/toy/fiber_toy_attribute_first.py, '
                        'which reads the colour; configs/toy/fiber_toy.py has the higher AP50 without it; '
                        'configs/toy/fiber_toy_attribute_first_3600.py reaches the toy target in 3x the time)')
    args = parser.parse_args()
    config = osp.abspath(args.config)
    data = osp.join(REPO_ROOT, Config.fromfile(config).data_root)
    version = toy_dataset_version(data)
    if version is not None and version != DATASET_VERSION:
        print(f'{data} holds toy dataset version {version}; this checkout writes version {DATASET_VERSION}: '
              'regenerating it', flush=True)
    if version != DATASET_VERSION:
        run([sys.executable, osp.join(REPO_ROOT, 'tools', 'misc', 'make_toy_dataset.py'), data, '--seed', '0'])

    start = time.time()
    run([sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'), config, '--work-dir', args.work_dir,
         '--cfg-options', *TRAIN_ONLY])
    train_minutes = (time.time() - start) / 60
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    test_dir = osp.join(args.work_dir, 'test')
    run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), config, checkpoint, '--work-dir', test_dir])
    results = sorted(glob.glob(osp.join(test_dir, '*', '*.json')), key=os.path.getmtime)
    with open(results[-1]) as f:
        metrics = json.load(f)
    ap50 = metrics['shapes/coco/bbox_mAP_50']
    grounding = metrics['novel_grounding/flickr30k/Recall@1_all']
    unique_colour = metrics['novel_grounding_unique_colour/flickr30k/Recall@1_all']
    # what the model predicts on held-out images: detection prompts and captions of novel colour-shape pairs
    run([sys.executable, osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'prediction_grid.py'), config, checkpoint,
         '--out', osp.join(args.work_dir, 'predictions.png')])
    print(f'toy summary: AP50={ap50:.2f} grounding_acc_novel={grounding:.2f} train_minutes={train_minutes:.1f} '
          f'(grounding_acc_unique_colour={unique_colour:.2f} step_seconds={mean_step_seconds(args.work_dir):.3f})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
