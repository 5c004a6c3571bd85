"""The embedded default, end to end on a CPU: generate the built-in toy dataset (if missing), train the small
FIBER on it with the real recipe's pipeline, losses and evaluators, evaluate, and print one summary line.

Usage:
    python tools/misc/quickstart.py [--work-dir work_dirs/quickstart] [--config configs/toy/fiber_toy.py]

The data lives where the toy config expects it (its ``data_root``, ``data/toy_shapes``).

It also writes ``WORK_DIR/predictions.png``: held-out toy images with the predicted boxes and phrases (detection
prompts, and captions of colour-shape pairs never seen in training).

Output ends with ``toy summary: AP50=... grounding_acc_novel=... train_minutes=...``: COCO box AP50 on the
held-out detection images, and phrase-grounding accuracy (top-1 box IoU >= 0.5, i.e. Recall@1) on captions
whose colour-shape combinations never occur in training.
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
CONFIG = osp.join(REPO_ROOT, 'configs', 'toy', 'fiber_toy.py')


def run(cmd) -> None:
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default=osp.join(REPO_ROOT, 'work_dirs', 'quickstart'))
    parser.add_argument('--config', default=CONFIG, help='a toy config (default: configs/toy/fiber_toy.py; '
                        'configs/toy/fiber_toy_2400x2.py learns more in about 1.4x the time)')
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
         '--cfg-options', 'train_cfg.val_interval=1000000'])  # evaluated once, below
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
    # what the model predicts on held-out images: detection prompts and captions of novel colour-shape pairs
    run([sys.executable, osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'prediction_grid.py'), config, checkpoint,
         '--out', osp.join(args.work_dir, 'predictions.png')])
    print(f'toy summary: AP50={ap50:.2f} grounding_acc_novel={grounding:.2f} train_minutes={train_minutes:.1f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
