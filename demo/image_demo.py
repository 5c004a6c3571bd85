"""Run FIBER on your own images from text, as MMDetection's ``demo/image_demo.py``.

Examples::

    # class names ('.'-separated; -c / --custom-entities), or a dataset's names with '$: coco' / '$: lvis'
    python demo/image_demo.py demo/demo.jpg CONFIG --weights CKPT --texts 'a man . a horse .' -c
    python demo/image_demo.py images/ CONFIG --weights CKPT --texts '$: coco'
    # phrase grounding: the caption and the phrases in it (or their character spans)
    python demo/image_demo.py img.jpg CONFIG --weights CKPT --texts 'a man riding a horse' \\
        --phrases 'a man' 'a horse'
    python demo/image_demo.py img.jpg CONFIG --weights CKPT --texts 'a man riding a horse' \\
        --tokens-positive '[[[0, 5]], [[14, 21]]]'
    # referring expression: the whole text is one phrase; the top box is its answer
    python demo/image_demo.py img.jpg CONFIG --weights CKPT --texts 'the man on the left' --tokens-positive -1

Writes ``OUT_DIR/vis/<image>`` (boxes with phrase names and scores >= ``--pred-score-thr``) and
``OUT_DIR/preds/<image>.json`` (every detection: ``bboxes`` xyxy in input-image pixels, ``scores``, ``labels``,
``label_names``). Boxes are in the image as a viewer shows it (a phone photo's EXIF orientation applied). A
folder's images are the files ending in an image extension in any case (``.jpg``, ``.JPG``, ``.png``, ``.tif``,
``.webp``, ...); hidden files, sub-folders and other files are counted in a warning. A folder shows a progress
bar; an image that fails is reported and the others go on; the exit status is 1 if any image failed.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from rich.progress import track

from fiber_mmdet.apis import FIBERInferencer, ImageLoadError, best_detection
from fiber_mmdet.utils.image_files import IMAGE_EXTENSIONS, describe_left_out, scan_image_folder
from fiber_mmdet.utils import PromptError
from fiber_mmdet.utils.prompt_args import add_prompt_args, prompt_from_args


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('model', help='config file')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    add_prompt_args(parser, required=True)
    parser.add_argument('--pred-score-thr', type=float, default=0.3, help='score threshold of the drawn boxes')
    parser.add_argument('--out-dir', default='outputs', help='where vis/ and preds/ are written')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--palette', default='none', help="box colours: 'coco', 'voc', 'random' or 'none'")
    args = parser.parse_args(argv)
    prompt_from_args(parser, args)  # --phrases / --tokens-positive -> args.tokens_positive
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    inferencer = FIBERInferencer(model=args.model, weights=args.weights, device=args.device,
                                 palette=args.palette, show_progress=False)
    images = [args.inputs]
    if osp.isdir(args.inputs):
        images, left_out = scan_image_folder(args.inputs)
        if left_out:
            print(describe_left_out(args.inputs, left_out), file=sys.stderr)
    if not images:
        print(f'{args.inputs}: no image found (looked for files ending in {", ".join(IMAGE_EXTENSIONS)}, '
              'in any case)', file=sys.stderr)
        return 1
    failed = []
    for image in (track(images, description='FIBER') if len(images) > 1 else images):
        try:
            pred = inferencer(image, texts=args.texts, custom_entities=args.custom_entities,
                              tokens_positive=args.tokens_positive, pred_score_thr=args.pred_score_thr,
                              out_dir=args.out_dir, no_save_pred=False)['predictions'][0]
        except PromptError as e:  # the same text fails on every image
            print(f'error: {e}', file=sys.stderr)
            return 2
        except (ImageLoadError, FileNotFoundError) as e:
            failed.append((image, str(e)))
            print(f'skipped: {e}', file=sys.stderr)
            continue
        shown = sum(s >= args.pred_score_thr for s in pred['scores'])
        if shown == 0:
            best = best_detection(pred)
            hint = f'best {best[0]:.3f} ({best[1]!r})' if best else 'the model returned no box'
            print(f'{image}: no detection with score >= {args.pred_score_thr} ({hint}); '
                  'lower --pred-score-thr to see more')
    stems = [osp.basename(i) for i in images if i not in {f for f, _ in failed}]
    print(f'{len(stems)} image(s) done: pictures in {osp.join(args.out_dir, "vis")}, '
          f'detections in {osp.join(args.out_dir, "preds")}')
    if failed:
        print(f'{len(failed)} image(s) failed:', *(f'  {f}' for f, _ in failed), sep='\n', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
