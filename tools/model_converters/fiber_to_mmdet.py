"""Convert an official FIBER checkpoint to a fiber_mmdet checkpoint.

Usage:
    python tools/model_converters/fiber_to_mmdet.py SRC DST [--ema] [--coarse]

SRC is a file written by the original code (``{'model': state_dict, ...}``, maybe ``model_ema``; keys maybe
prefixed ``module.``). The result ``{'state_dict': ..., 'meta': ...}`` loads with ``load_from=DST`` or
``tools/test.py CONFIG DST``. FIBER v2 / v3 (RefCOCO) is detected from the keys and printed: use a config
with ``i2t_query_norm=True`` for v3. ``--coarse`` converts a coarse-stage init checkpoint
(``vit_model.`` / ``text_transformer.``) to initialise the fine-grained pre-training.
"""
import argparse
import os
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from fiber_mmdet.utils.fiber_checkpoint import load_fiber_checkpoint  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official FIBER checkpoint (.pth)')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--ema', action='store_true', help='convert the EMA weights (model_ema)')
    parser.add_argument('--coarse', action='store_true', help='source is a coarse-stage init checkpoint')
    args = parser.parse_args()
    if not osp.isfile(args.src):
        print(f'no such file: {args.src}', file=sys.stderr)
        return 2
    try:
        result = load_fiber_checkpoint(args.src, use_ema=args.ema, coarse=args.coarse)
    except (KeyError, ValueError) as e:
        print(f'cannot convert {args.src}: {e}', file=sys.stderr)
        return 1
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = dict(source=osp.basename(args.src), fiber_version=result.version, ema=args.ema,
                dropped_keys=result.dropped)
    torch.save(dict(state_dict=result.state_dict, meta=meta), args.dst)
    n_params = sum(v.numel() for v in result.state_dict.values())
    print(f'{args.src} -> {args.dst}: FIBER {result.version}, {len(result.state_dict)} tensors '
          f'({n_params:,} values), dropped {len(result.dropped)} recomputable/unused keys')
    if result.version == 'v3':
        print('v3 checkpoint: use a config with backbone.i2t_query_norm=True')
    return 0


if __name__ == '__main__':
    sys.exit(main())
