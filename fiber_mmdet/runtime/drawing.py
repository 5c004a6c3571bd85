"""Pictures of the ONNX runtime's detections, Pillow only: each box shown with its phrase and score."""
import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def label_colour(label: int) -> tuple:
    """A distinct, saturated RGB colour per label (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(rgb: np.ndarray, prediction: dict, score_thr: float, top_only: bool = False) -> Image.Image:
    """The image (H, W, 3) uint8 RGB with the boxes of ``prediction`` (``bboxes``, ``scores``, ``labels``,
    ``label_names``) scoring at least ``score_thr``; ``top_only`` draws just the best box (a referring
    expression's answer)."""
    picture = Image.fromarray(rgb).convert('RGB')
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    order: Sequence[int] = sorted(range(len(prediction['scores'])), key=lambda i: -prediction['scores'][i])
    if top_only:
        order = order[:1]
    width = max(1, round(max(picture.size) / 300))
    for i in order:
        score = prediction['scores'][i]
        if score < score_thr:
            continue
        colour = label_colour(prediction['labels'][i])
        x1, y1, x2, y2 = prediction['bboxes'][i]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        text = f'{prediction["label_names"][i]}: {score:.2f}'
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
        top_y = max(0, y1 - (bottom - top) - 2)
        draw.rectangle([x1, top_y, x1 + (right - left) + 4, top_y + (bottom - top) + 2], fill=colour)
        draw.text((x1 + 2, top_y), text, fill=(0, 0, 0), font=font)
    return picture
