"""Detections from the graph's outputs, numpy only: FIBER's head post-processing (``FIBERHead.predict_by_feat``)
and mmcv's class-wise NMS, step for step in float32.

Per FPN level: candidates ``(anchor, label)`` with class score > ``score_thr``; the ``nms_pre`` best by class
score × centerness; score √(class score × centerness); then class-wise NMS over all levels (mmcv's offset trick:
boxes shifted by ``label × (max coordinate + 1)``), the ``max_per_img`` best, and the rescale to the original
image.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np


class Detections(NamedTuple):
    """Boxes (K, 4) xyxy float32, scores (K,) float32, labels (K,) int64 (0-based within the prompt)."""
    bboxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def class_scores_from_tokens(token_scores: np.ndarray, label_to_tokens: Dict[int, List[int]]) -> np.ndarray:
    """(N, C) mean token score of each label (label ``j`` is key ``j + 1``) from (N, T) token scores."""
    return np.stack([token_scores[:, label_to_tokens[j + 1]].mean(-1) for j in range(len(label_to_tokens))], 1)


def _greedy_keep(boxes: np.ndarray, offset: np.float32, threshold: np.float32) -> np.ndarray:
    """Kept flags of boxes (K, 4) sorted best first: each kept box suppresses the later ones whose IoU with it
    is above ``threshold`` (the IoU of mmcv's CPU kernel, element for element in float32)."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    zero = np.float32(0)
    w = np.maximum(zero, np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]) + offset)
    h = np.maximum(zero, np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]) + offset)
    inter = w * h
    over = inter / (areas[:, None] + areas[None] - inter) > threshold  # (K, K)
    kept = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if kept[i]:
            kept[i + 1:] &= ~over[i, i + 1:]
    return kept


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, offset: int = 0,
        groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices kept by greedy NMS, best score first (mmcv's CPU ``nms``: IoU > threshold suppresses; widths
    ``x2 - x1 + offset``). With ``groups``, boxes of different groups are known not to overlap (class-wise NMS
    after mmcv's coordinate shift), so each group is suppressed on its own: the same result in O(group²)."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind='stable')
    kept = np.zeros(len(order), dtype=bool)  # by position in ``order``
    positions = [np.arange(len(order))] if groups is None else \
        [np.flatnonzero(groups[order] == g) for g in np.unique(groups)]
    for pos in positions:
        kept[pos] = _greedy_keep(boxes[order[pos]], np.float32(offset), np.float32(iou_threshold))
    return order[kept].astype(np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float,
                offset: int = 0) -> np.ndarray:
    """Class-wise NMS (mmcv's ``batched_nms``: coordinates shifted by ``label × (max coordinate + 1)`` so that
    boxes of different labels never overlap, then one NMS)."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    shift = labels.astype(np.float32) * (boxes.max() + np.float32(1))
    return nms(boxes + shift[:, None], scores, iou_threshold, offset, groups=labels)


def detections(boxes: np.ndarray, class_scores: np.ndarray, centerness: np.ndarray,
               level_sizes: Sequence[int], scale_factor: Sequence[float], settings: dict) -> Detections:
    """One image and one prompt: boxes (N, 4) in resized-image pixels, class scores (N, C), centerness (N,).

    Args:
        level_sizes: anchors per FPN level, in order (N is their sum).
        scale_factor: (w_scale, h_scale) of the resize; boxes are divided by it.
        settings: ``score_thr``, ``nms_pre``, ``iou_threshold``, ``nms_offset``, ``max_per_img``.
    """
    score_thr, nms_pre = np.float32(settings['score_thr']), settings['nms_pre']
    out_boxes, out_scores, out_labels = [], [], []
    start = 0
    for size in level_sizes:
        level = slice(start, start + int(size))
        start += int(size)
        scores, ctr = class_scores[level], centerness[level]
        anchor, label = np.nonzero(scores > score_thr)
        score = scores[anchor, label]
        if 0 < nms_pre < anchor.size:
            top = np.argsort(-(score * ctr[anchor]), kind='stable')[:nms_pre]
            anchor, label, score = anchor[top], label[top], score[top]
        out_boxes.append(boxes[level][anchor])
        out_scores.append(np.sqrt(score * ctr[anchor]))
        out_labels.append(label)
    bboxes = np.concatenate(out_boxes).astype(np.float32)
    scores = np.concatenate(out_scores).astype(np.float32)
    labels = np.concatenate(out_labels).astype(np.int64)
    if bboxes.shape[0]:
        keep = batched_nms(bboxes, scores, labels, settings['iou_threshold'], settings['nms_offset'])
        keep = keep[:settings['max_per_img']]
        bboxes, scores, labels = bboxes[keep], scores[keep], labels[keep]
    w_scale, h_scale = (np.float32(s) for s in scale_factor)
    bboxes = bboxes / np.asarray([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)
    return Detections(bboxes, scores, labels)
