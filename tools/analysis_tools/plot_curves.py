"""Validation metrics against training iterations, for one or more runs, in one picture.

Each run is a work directory of ``tools/train.py`` (its newest ``<timestamp>/vis_data/scalars.json``, which
MMEngine's ``LocalVisBackend`` writes) or such a ``scalars.json`` itself; ``PATH=LABEL`` names its line. Every
``--keys`` metric gets its own panel, with a point at each validation (and ``--targets``, a dashed line).

Example (the toy recipes, validated every 200 iterations)::

    python tools/analysis_tools/plot_curves.py work_dirs/toy=fiber_toy work_dirs/attr=attribute-first \\
        --keys shapes/coco/bbox_mAP_50 novel_grounding/flickr30k/Recall@1_all --targets 0.9 0.8 --out curves.png
"""
import argparse
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

Curve = List[Tuple[int, float]]


def scalars_file(path: str) -> str:
    """``path`` itself if it is a file, else the newest ``*/vis_data/scalars.json`` under it."""
    if osp.isfile(path):
        return path
    found = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')), key=os.path.getmtime)
    if not found:
        raise FileNotFoundError(f'{path}: no */vis_data/scalars.json (is it a tools/train.py work directory?)')
    return found[-1]


def read_curves(path: str, keys: List[str]) -> Dict[str, Curve]:
    """``{key: [(iteration, value), ...]}`` from the validation records of a scalars.json (their ``step`` is the
    training iteration). A key no record holds is an error that names the file and the keys it has."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    curves = {key: [(int(r['step']), float(r[key])) for r in records if key in r] for key in keys}
    missing = [key for key, curve in curves.items() if not curve]
    if missing:
        metrics = sorted({k for r in records for k in r if '/' in k})
        raise KeyError(f'{path}: no record holds {missing}; its metrics: {metrics or "none (no validation ran)"}')
    return curves


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, Curve]]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='WORK_DIR or scalars.json, optionally =LABEL')
    parser.add_argument('--keys', nargs='+', required=True, help='metric names as in scalars.json')
    parser.add_argument('--titles', nargs='+', help='one panel title per key (default: the key)')
    parser.add_argument('--targets', nargs='+', type=float, help='one value per key, drawn as a dashed line')
    parser.add_argument('--out', required=True, help='the picture (.png, .pdf, .svg)')
    args = parser.parse_args(argv)
    for option in ('titles', 'targets'):
        if getattr(args, option) and len(getattr(args, option)) != len(args.keys):
            parser.error(f'{len(getattr(args, option))} --{option} for {len(args.keys)} --keys')

    runs: Dict[str, Dict[str, Curve]] = {}
    for run in args.runs:
        path, _, label = run.partition('=')
        runs[label or path] = read_curves(scalars_file(path), args.keys)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(args.keys), figsize=(5 * len(args.keys), 3.8), squeeze=False)
    for i, (ax, key) in enumerate(zip(axes[0], args.keys)):
        for label, curves in runs.items():
            steps, values = zip(*curves[key])
            ax.plot(steps, values, marker='o', label=label)
        if args.targets:
            ax.axhline(args.targets[i], color='grey', linestyle='--', linewidth=1, label='target')
        title = args.titles[i] if args.titles else key
        ax.set(title=title, xlabel='training iteration')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f'{args.out}: {len(runs)} run(s) x {len(args.keys)} metric(s)')
    return runs


if __name__ == '__main__':
    main()
