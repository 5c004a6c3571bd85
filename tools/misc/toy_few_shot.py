"""Few-shot fine-tuning on the built-in toy data, end to end on a CPU (``make toy-few-shot``).

1. The toy model pre-trained by the quickstart (``work_dirs/quickstart``; ``make quickstart`` runs first when
   its checkpoint is missing).
2. The toy downstream set (``data/toy_novel_shapes``: star, ring, hexagon -- names the toy pre-training never
   saw -- with train / val / test splits), written if missing.
3. Zero-shot: that model on the downstream test split.
4. The ODinW protocol code (``tools/odinw_finetune.py`` with ``configs/toy/fiber_toy_few_shot.py``): 1-shot,
   5-shot and full fine-tuning, each validated every epoch with plateau lr drop and early stop, its best
   checkpoint tested on the test split.

Usage:
    python tools/misc/toy_few_shot.py [--work-dir work_dirs/toy_few_shot] [--shots 1 5 0] [--seeds 3]
                                      [--checkpoint CKPT]

Ends with ``toy few-shot: zero_shot_AP50=... 1shot_AP50=... 5shot_AP50=... full_AP50=...`` (COCO box AP50 on
the downstream test split; with several seeds, their mean).
"""
import argparse
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # run from a source checkout

from mmengine.config import Config  # noqa: E402

import fiber_mmdet  # noqa: E402,F401
from fiber_mmdet.datasets.synthetic_downstream import (DOWNSTREAM_VERSION, generate_toy_downstream,  # noqa: E402
                                                       toy_downstream_version)
from fiber_mmdet.engine.finetune_protocol import (REPO_ROOT, build_run_config, latest_test_metrics,  # noqa: E402
                                                  plan_runs, load_result, run_protocol)

CONFIG = osp.join(REPO_ROOT, 'configs', 'toy', 'fiber_toy_few_shot.py')
QUICKSTART_DIR = osp.join(REPO_ROOT, 'work_dirs', 'quickstart')


def run(cmd) -> None:
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def pretrained_checkpoint() -> str:
    """The quickstart's checkpoint, after running the quickstart if it is missing."""
    pointer = osp.join(QUICKSTART_DIR, 'last_checkpoint')
    if not osp.isfile(pointer):
        print(f'no toy model in {QUICKSTART_DIR}: running the quickstart first', flush=True)
        run([sys.executable, osp.join(REPO_ROOT, 'tools', 'misc', 'quickstart.py'), '--work-dir', QUICKSTART_DIR])
    with open(pointer, encoding='utf-8') as f:
        return f.read().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default=osp.join(REPO_ROOT, 'work_dirs', 'toy_few_shot'))
    parser.add_argument('--shots', nargs='+', type=int, default=[1, 5, 0], help='0 = full (default: %(default)s)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[3], help='default: %(default)s')
    parser.add_argument('--checkpoint', help="the toy model to start from (default: the quickstart's; it runs first "
                        'when missing)')
    args = parser.parse_args()
    checkpoint = args.checkpoint or pretrained_checkpoint()
    start = time.time()
    cfg = Config.fromfile(CONFIG)
    data = osp.join(REPO_ROOT, cfg.data_root)
    if toy_downstream_version(data) != DOWNSTREAM_VERSION:
        meta = generate_toy_downstream(data, seed=0)
        print(f'toy downstream set written to {data}: {meta["counts"]}', flush=True)
    name = cfg.finetune_protocol.datasets[0]['name']

    zero_dir = osp.join(args.work_dir, 'zero_shot')
    zero_cfg = build_run_config(cfg, name, 0, 0, zero_dir)
    zero_cfg.dump(_config_file(zero_dir))
    run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), osp.join(zero_dir, 'config.py'), checkpoint,
         '--work-dir', zero_dir])
    zero_shot = latest_test_metrics(zero_dir)['coco/bbox_mAP_50']

    run_protocol(cfg, checkpoint, args.work_dir, [name], args.shots, args.seeds,
                 log=lambda line: print(line, flush=True))
    parts = [f'zero_shot_AP50={zero_shot:.2f}']
    for k in args.shots:
        results = [load_result(r) for r in plan_runs([name], [k], args.seeds, args.work_dir)]
        value = statistics.fmean(r['test']['coco/bbox_mAP_50'] for r in results)
        parts.append(f'{"full" if k == 0 else f"{k}shot"}_AP50={value:.2f}')
    print(f'toy few-shot minutes (after the quickstart): {(time.time() - start) / 60:.1f}')
    print('toy few-shot: ' + ' '.join(parts))
    return 0


def _config_file(work_dir: str) -> str:
    os.makedirs(work_dir, exist_ok=True)
    return osp.join(work_dir, 'config.py')


if __name__ == '__main__':
    sys.exit(main())
