"""Export a FIBER checkpoint to a folder that runs with onnxruntime alone (``demo/onnx_demo.py``).

Examples::

    # any text at run time: inputs image, img_hw, input_ids, attention_mask
    python tools/deployment/export_onnx.py CONFIG CKPT --out work_dirs/fiber_onnx
    # a fixed vocabulary folded in: the graph takes only the image
    python tools/deployment/export_onnx.py CONFIG CKPT --out work_dirs/fiber_cats --texts 'cat . dog' -c
    # a fixed input size (images are resized as usual, then padded to it)
    python tools/deployment/export_onnx.py CONFIG CKPT --out work_dirs/fiber_800 --shape 800 1344

Writes ``OUT/fiber.onnx``, the tokenizer files and ``OUT/fiber_onnx.json`` (pre-processing, token budget,
post-processing, prompts of a fixed vocabulary). See docs/deployment.md.
"""
import argparse
import os.path as osp
import sys
import time
from typing import List, Optional

from mmengine.config import DictAction

import fiber_mmdet  # noqa: F401  (registers fiber_mmdet's modules)
from fiber_mmdet.deployment import export_onnx
from fiber_mmdet.deployment.onnx_export import OPSET
from fiber_mmdet.runtime import ExportError
from fiber_mmdet.utils.prompt_args import add_prompt_args, prompt_from_args


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='folder to write')
    add_prompt_args(parser, required=False)
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='a fixed padded input size (multiples of 32); default: any size')
    parser.add_argument('--opset', type=int, default=OPSET, help=f'ONNX opset (default {OPSET})')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    prompt = prompt_from_args(parser, args)
    if args.opset < OPSET:
        parser.error(f'--opset {args.opset}: the graph needs opset {OPSET} or newer')
    return args, prompt


def main(argv: Optional[List[str]] = None) -> int:
    args, (texts, tokens_positive, custom_entities) = parse_args(argv)
    start = time.time()
    try:
        path = export_onnx(args.config, args.checkpoint, args.out, texts=texts, tokens_positive=tokens_positive,
                           custom_entities=custom_entities or tokens_positive is None,
                           shape=tuple(args.shape) if args.shape else None, cfg_options=args.cfg_options,
                           opset=args.opset)
    except ExportError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    kind = 'fixed vocabulary ' + repr(texts) if texts else 'free text'
    print(f'exported {osp.getsize(path) / 2**20:.1f} MiB ({kind}, opset {args.opset}) to {args.out} in '
          f'{time.time() - start:.0f} s; run it with: python demo/onnx_demo.py IMAGE {args.out}'
          + ('' if texts else " --texts 'cat . dog' -c"))
    return 0


if __name__ == '__main__':
    sys.exit(main())
