"""A picture of what a model predicts: the first images of each test dataset of a config, with their prompt,
in one grid.

Each tile is the image with the predicted boxes (score >= ``--score-thr``) and the class / phrase they ground,
under the sample's prompt (class list, caption or expression, as the benchmark gives it): for a class list one
label per object (the best of boxes overlapping by IoU >= 0.7), for a caption each phrase's top box, for an
expression its top box.

Example::

    python tools/analysis_tools/prediction_grid.py configs/toy/fiber_toy.py work_dirs/quickstart/iter_1900.pth \\
        --out work_dirs/quickstart/predictions.png
"""
import argparse
import textwrap
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config, DictAction
from PIL import Image, ImageDraw

from fiber_mmdet.apis import FIBERInferencer


def test_samples(cfg: Config, per_dataset: int) -> List[Tuple[str, dict]]:
    """(dataset name, data info) of the first ``per_dataset`` samples of each test dataset of ``cfg``; the names
    are the evaluator's ``dataset_prefixes`` where it has them (multi-dataset configs), else the class names."""
    from mmdet.registry import DATASETS
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    parts = getattr(dataset, 'datasets', [dataset])
    names = cfg.get('test_evaluator', {}).get('dataset_prefixes', None)
    if names is None or len(names) != len(parts):
        names = [type(part).__name__ for part in parts]
    samples = []
    for name, part in zip(names, parts):
        for i in range(min(per_dataset, len(part))):
            samples.append((name, part.get_data_info(i)))
    return samples


def prompt_of(info: dict) -> Tuple[dict, str]:
    """Inferencer arguments for a data sample, and the prompt as a title."""
    text, tokens_positive = info['text'], info.get('tokens_positive', None)
    if isinstance(text, (list, tuple)):
        return dict(texts=[tuple(text)], custom_entities=True), ' . '.join(text)
    if tokens_positive is not None:
        return dict(texts=text, tokens_positive=tokens_positive), text
    return dict(texts=text, custom_entities=bool(info.get('custom_entities', False))), text


def titled(image: np.ndarray, title: str, width: int, height: int, lines: int = 3) -> np.ndarray:
    """The image (RGB) padded to ``width`` x ``height`` under a title of at most ``lines`` wrapped lines."""
    line_height, title_height = 12, 12 * lines + 6
    tile = Image.new('RGB', (width, height + title_height), (255, 255, 255))
    tile.paste(Image.fromarray(image), (0, title_height))
    draw = ImageDraw.Draw(tile)
    wrapped = textwrap.wrap(title, width=max(10, width // 6))[:lines]
    for k, line in enumerate(wrapped):
        draw.text((3, 3 + k * line_height), line, fill=(0, 0, 0))
    return np.asarray(tile)


def grid(tiles: Sequence[np.ndarray], columns: int, gap: int = 6) -> np.ndarray:
    """Tiles of equal size in rows of ``columns``, on white."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    out = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return out


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', default='predictions.png', help='the PNG to write')
    parser.add_argument('--per-dataset', type=int, default=4, help='images of each test dataset')
    parser.add_argument('--columns', type=int, default=4)
    parser.add_argument('--score-thr', type=float, default=0.3)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    inferencer = FIBERInferencer(model=cfg, weights=args.checkpoint, device=args.device, show_progress=False)
    drawn = []
    for name, info in test_samples(cfg, args.per_dataset):
        kwargs, title = prompt_of(info)
        vis = inferencer(info['img_path'], **kwargs, return_vis=True, pred_score_thr=args.score_thr,
                         one_label_per_box=True)
        drawn.append((f'[{name}] {title}', vis['visualization'][0]))
    width = max(image.shape[1] for _, image in drawn)
    height = max(image.shape[0] for _, image in drawn)
    picture = grid([titled(image, title, width, height) for title, image in drawn], args.columns)
    Image.fromarray(picture).save(args.out)
    print(f'prediction grid ({len(drawn)} images, boxes with score >= {args.score_thr}): {args.out}')
    return args.out


if __name__ == '__main__':
    main()
