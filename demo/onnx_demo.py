"""Run an exported FIBER (tools/deployment/export_onnx.py) with onnxruntime alone: no torch, no mmcv.

Needs only ``pip install fiber_mmdet[deploy]`` (onnxruntime, tokenizers, numpy, Pillow). The prompts are those of
``demo/image_demo.py``::

    python demo/onnx_demo.py images/ work_dirs/fiber_onnx --texts 'a man . a horse .' -c
    python demo/onnx_demo.py img.jpg work_dirs/fiber_onnx --texts 'a man riding a horse' --phrases 'a man' 'a horse'
    python demo/onnx_demo.py img.jpg work_dirs/fiber_onnx --texts 'the man on the left' --tokens-positive -1
    python demo/onnx_demo.py img.jpg work_dirs/fiber_cats          # a fixed-vocabulary export takes no text

Writes ``OUT_DIR/vis/<image>`` (boxes with phrase names and scores >= ``--pred-score-thr``; a referring
expression shows its answer, the top box) and ``OUT_DIR/preds/<image>.json`` (every detection: ``bboxes`` xyxy in
input-image pixels, ``scores``, ``labels``, ``label_names``). An image that fails is reported and the others go
on; the exit status is 1 if any image failed, 2 for a prompt or model that cannot run.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import List, Optional

from fiber_mmdet.runtime import ONNXFIBER, DeploymentError
from fiber_mmdet.runtime.drawing import draw_detections
from fiber_mmdet.runtime.preprocess import read_image
from fiber_mmdet.utils.image_files import IMAGE_EXTENSIONS, describe_left_out, scan_image_folder
from fiber_mmdet.utils.image_io import ImageLoadError
from fiber_mmdet.utils.prompt_args import add_prompt_args, prompt_from_args
from fiber_mmdet.utils.prompts import PromptError


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('model', help='the folder tools/deployment/export_onnx.py wrote')
    add_prompt_args(parser, required=False)
    parser.add_argument('--pred-score-thr', type=float, default=0.3, help='score threshold of the drawn boxes')
    parser.add_argument('--out-dir', default='outputs', help='where vis/ and preds/ are written')
    parser.add_argument('--batch-size', type=int, default=1, help='images per graph run (same padded size)')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: onnxruntime decides)')
    parser.add_argument('--providers', nargs='+', default=None,
                        help='onnxruntime execution providers, e.g. CUDAExecutionProvider CPUExecutionProvider')
    args = parser.parse_args(argv)
    return args, prompt_from_args(parser, args)


def list_images(inputs: str) -> List[str]:
    if osp.isdir(inputs):
        images, left_out = scan_image_folder(inputs)
        if left_out:
            print(describe_left_out(inputs, left_out), file=sys.stderr)
        return images
    return [inputs]


def main(argv: Optional[List[str]] = None) -> int:
    args, (texts, tokens_positive, custom_entities) = parse_args(argv)
    try:
        model = ONNXFIBER(args.model, providers=args.providers, threads=args.threads)
    except DeploymentError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    images = list_images(args.inputs)
    if not images:
        print(f'{args.inputs}: no image found (looked for files ending in {", ".join(IMAGE_EXTENSIONS)}, in any '
              'case)', file=sys.stderr)
        return 1
    os.makedirs(osp.join(args.out_dir, 'vis'), exist_ok=True)
    os.makedirs(osp.join(args.out_dir, 'preds'), exist_ok=True)
    expression = isinstance(tokens_positive, int) and tokens_positive == -1
    failed = []
    start = time.time()
    for k in range(0, len(images), args.batch_size):
        chunk, rgbs = [], []
        for image in images[k:k + args.batch_size]:
            try:
                rgbs.append(read_image(image, model.meta['preprocess'].get('orientation', 'exif'),
                                       model.max_pixels))
                chunk.append(image)
            except (ImageLoadError, DeploymentError, FileNotFoundError) as e:
                failed.append(image)
                print(f'skipped: {e}', file=sys.stderr)
        if not chunk:
            continue
        try:
            preds = model(rgbs, texts=texts, tokens_positive=tokens_positive, custom_entities=custom_entities,
                          batch_size=args.batch_size)
        except (PromptError, DeploymentError) as e:  # the same text fails on every image
            print(f'error: {e}', file=sys.stderr)
            return 2
        for image, rgb, pred in zip(chunk, rgbs, preds):
            stem = osp.splitext(osp.basename(image))[0]
            draw_detections(rgb, pred, args.pred_score_thr, top_only=expression).save(
                osp.join(args.out_dir, 'vis', osp.basename(image)))
            with open(osp.join(args.out_dir, 'preds', stem + '.json'), 'w', encoding='utf-8') as f:
                json.dump(pred, f, ensure_ascii=False)
            if not any(s >= args.pred_score_thr for s in pred['scores']):
                best = max(range(len(pred['scores'])), key=pred['scores'].__getitem__, default=None)
                hint = (f'best {pred["scores"][best]:.3f} ({pred["label_names"][best]!r})' if best is not None
                        else 'the model returned no box')
                print(f'{image}: no detection with score >= {args.pred_score_thr} ({hint}); '
                      'lower --pred-score-thr to see more')
        if len(images) > 1:
            print(f'[{min(k + args.batch_size, len(images))}/{len(images)}] {time.time() - start:.1f} s')
    done = len(images) - len(failed)
    print(f'{done} image(s) done: pictures in {osp.join(args.out_dir, "vis")}, '
          f'detections in {osp.join(args.out_dir, "preds")}')
    if failed:
        print(f'{len(failed)} image(s) failed:', *(f'  {f}' for f in failed), sep='\n', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
