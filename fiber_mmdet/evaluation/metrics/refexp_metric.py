"""Referring-expression accuracy (RefCOCO / RefCOCO+ / RefCOCOg) with MDETR's generalized-IoU criterion."""
from collections import OrderedDict, defaultdict
from typing import Dict

import numpy as np
import torch
from mmengine.logging import MMLogger

from mmdet.evaluation.metrics import RefExpMetric
from mmdet.registry import METRICS
from mmdet.structures.bbox import bbox_overlaps


def rank_by_score_then_box(bboxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Order predictions as the reference does: ``sorted(zip(scores, boxes), reverse=True)``.

    Descending score; equal scores are ordered by the box coordinates compared as tuples, also descending (larger
    ``x1`` first). The original evaluator (``MB/data/datasets/refexp.py``) sorts the ``(score, box)`` pairs this
    way, so a tie at rank 1 is decided by the box, not by the detector's output order.

    Args:
        bboxes (np.ndarray): (N, 4) xyxy boxes.
        scores (np.ndarray): (N, ) scores.

    Returns:
        np.ndarray: (N, ) indices, best first.
    """
    keys = [(score, tuple(box)) for score, box in zip(scores.tolist(), bboxes.tolist())]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__, reverse=True), dtype=np.int64)


@METRICS.register_module()
class GIoURefExpMetric(RefExpMetric):
    """Precision@k of referring expressions with **generalized IoU** >= 0.5, per split and averaged.

    FIBER evaluates RefCOCO/+/g with MDETR's ``RefExpEvaluator`` (``MB/data/datasets/refexp.py:18-88``): for each
    expression the predictions are ranked (see :func:`rank_by_score_then_box`), the generalized IoU (no "+1") of
    each ranked box with the ground-truth box ``[x, y, x + w, y + h]`` is computed, and the expression counts at
    ``k`` if any of the top ``k`` reaches ``iou_thrs``. The headline accuracy is P@1.

    This subclasses mmdet's :class:`~mmdet.evaluation.metrics.RefExpMetric` (same ``ann_file`` reading and same
    ``process``: ``img_id`` + CPU ``bboxes``/``scores`` of ``pred_instances``, boxes xyxy in original-image
    pixels) and fixes what differs from the protocol:

    * generalized IoU instead of plain IoU (GIoU <= IoU, so it is stricter);
    * predictions are re-ranked as the reference does instead of taken in output order;
    * splits are the ``dataset_name`` values of the evaluated expressions (any name, not only the three), and the
      means are over those splits only (mmdet divides by 9 whatever ran and reports 0 for absent splits).

    Args:
        ann_file (str): MDETR-style annotation file (``final_refexp_val.json``, ``finetune_refcoco_testA.json``...):
            one image per expression with ``dataset_name`` and exactly one annotation.
        topk (Sequence[int]): The ``k`` of Precision@k. Defaults to ``(1, 5, 10)``.
        iou_thrs (float): Generalized-IoU threshold (inclusive). Defaults to 0.5.
        **kwargs: ``metric``, ``collect_device``, ``prefix`` (default ``'refexp'``).

    Returns (from ``compute_metrics``):
        dict: ``{split}_precision@{k}`` for every split and ``k``; ``mean_precision@{k}`` = mean over the splits
        that ran; ``mean_precision`` = mean over those splits and all ``k`` (mmdet's ``save_best`` key, fixed).
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Compute Precision@k per split.

        Args:
            results (list): Dicts with ``img_id``, ``bboxes`` (N, 4) and ``scores`` (N, ) from :meth:`process`.

        Returns:
            Dict[str, float]: see the class docstring.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        topk = list(self.topk)
        hits: Dict[str, Dict[int, int]] = defaultdict(lambda: {k: 0 for k in topk})
        counts: Dict[str, int] = defaultdict(int)

        for result in results:
            img_id = result['img_id']
            ann_ids = self.coco.get_ann_ids(img_ids=[img_id])
            if len(ann_ids) != 1:
                raise ValueError(f'expression {img_id} has {len(ann_ids)} annotations, expected exactly 1.')
            split = self.coco.load_imgs([img_id])[0]['dataset_name']
            x, y, w, h = self.coco.load_anns(ann_ids)[0]['bbox']
            counts[split] += 1

            bboxes = np.asarray(result['bboxes'], dtype=np.float32).reshape(-1, 4)
            scores = np.asarray(result['scores'], dtype=np.float32).reshape(-1)
            if len(scores) == 0:
                continue
            ranked = bboxes[rank_by_score_then_box(bboxes, scores)]
            gt = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)
            gious = bbox_overlaps(torch.from_numpy(ranked), gt, mode='giou')[:, 0].numpy()
            for k in topk:
                if gious[:k].max() >= self.iou_thrs:
                    hits[split][k] += 1

        out_results: Dict[str, float] = OrderedDict()
        splits = sorted(counts)
        for split in splits:
            precisions = [hits[split][k] / counts[split] for k in topk]
            logger.info(f' Dataset: {split} - Precision @ {", ".join(map(str, topk))}: {precisions} '
                        f'({counts[split]} expressions)')
            for k, precision in zip(topk, precisions):
                out_results[f'{split}_precision@{k}'] = precision
        if not splits:
            logger.error('No expression was evaluated.')
            return out_results

        for k in topk:
            out_results[f'mean_precision@{k}'] = float(np.mean([out_results[f'{s}_precision@{k}'] for s in splits]))
        out_results['mean_precision'] = float(np.mean([out_results[f'mean_precision@{k}'] for k in topk]))
        return out_results
