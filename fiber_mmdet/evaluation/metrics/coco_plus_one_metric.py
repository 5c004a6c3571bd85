"""COCO box AP with FIBER's legacy "+1" box widths (COCO val2017 and ODinW).

FIBER's detector (like maskrcnn-benchmark) treats a box ``[x1, y1, x2, y2]`` as covering the pixels ``x1..x2``
*inclusive*, so its COCO json writer uses ``w = x2 - x1 + 1``, ``h = y2 - y1 + 1``
(``MB/data/datasets/evaluation/coco/coco_eval.py``, ``BoxList.convert('xywh')``). Our detector outputs plain
xyxy boxes in original-image pixels; the "+1" belongs to the evaluation protocol and is applied here, not in the
model. On the golden fixture the "+1" moves AP by ~3 points (0.2477 vs 0.2180), so it is not cosmetic.
"""
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.fileio import load
from mmengine.logging import MMLogger

from mmdet.datasets.api_wrappers import COCO, COCOeval
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from ...datasets.box_drops import xywh_reaches_outside

# Index of each summary number in ``COCOeval.stats`` (pycocotools' fixed order). The AR names are built from
# ``proposal_nums`` (the three ``maxDets``), see ``_stat_names``.
_AP_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def gt_boxes_outside_images(coco: COCO, tolerance: float = 1e-3) -> List[int]:
    """Ids of the ground-truth annotations whose xywh box reaches outside its image (``x < 0``, ``y < 0``,
    ``x + w > width`` or ``y + h > height``, beyond ``tolerance`` pixels)."""
    outside = []
    for ann in coco.dataset.get('annotations', []):
        image = coco.imgs.get(ann['image_id'], {})
        if 'bbox' not in ann or 'width' not in image:
            continue
        if xywh_reaches_outside(ann['bbox'], image['width'], image['height'], tolerance):
            outside.append(ann['id'])
    return outside


def warn_gt_boxes_outside_images(coco: COCO, ann_file: Optional[str], logger: MMLogger) -> None:
    """Warn (with the count and the first ids) when ground-truth boxes lie outside their image: they stay in
    the evaluation as the annotation file defines them, and can lower AP."""
    outside = gt_boxes_outside_images(coco)
    if outside:
        images = sorted({coco.anns[i]['image_id'] for i in outside})
        logger.warning(f'{ann_file}: {len(outside)} ground-truth box(es) in {len(images)} image(s) reach outside '
                       f'their image (annotation ids {outside[:10]}, image ids {images[:10]}); they are evaluated '
                       'as annotated and can lower AP')


@METRICS.register_module()
class CocoPlusOneMetric(CocoMetric):
    """COCO bbox AP where predicted boxes are written with "+1" widths.

    Subclass of mmdet's :class:`~mmdet.evaluation.metrics.CocoMetric` that keeps its data flow (``process``
    collects CPU numpy results; ``compute_metrics`` converts and evaluates on rank 0) and changes three things:

    * ``xyxy2xywh`` writes ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` when ``box_plus_one`` is True (FIBER's COCO and
      ODinW protocol, ``MB/data/datasets/evaluation/coco/coco_eval.py:125-154``). Ground truth is read from the
      annotation file unchanged.
    * ``proposal_nums`` defaults to ``(1, 10, 100)``: these are pycocotools' ``maxDets``, so AP is computed with
      at most 100 detections per image and AR@1/10/100 are the standard COCO numbers (mmdet's default
      ``(100, 300, 1000)`` is meant for proposals).
    * All 12 ``COCOeval.stats`` are returned at **full precision** (mmdet rounds to 3 decimals), so parity with
      the reference can be checked to 1e-6.

    Only the ``'bbox'`` metric is supported (FIBER is a box detector).

    Args:
        box_plus_one (bool): Write predicted boxes with ``w = x2 - x1 + 1`` and ``h = y2 - y1 + 1``. Defaults to
            True (the FIBER protocol); False gives mmdet's plain ``w = x2 - x1``.
        proposal_nums (Sequence[int]): pycocotools ``maxDets`` (three values). Defaults to ``(1, 10, 100)``.
        **kwargs: Other arguments of :class:`~mmdet.evaluation.metrics.CocoMetric` (``ann_file``,
            ``classwise``, ``format_only``, ``outfile_prefix``, ``backend_args``, ``collect_device``, ``prefix``,
            ``sort_categories``, ``iou_thrs``, ``metric_items``...). ``metric_items`` select among the returned
            names without the ``bbox_`` prefix (e.g. ``['mAP', 'AR@100']``).

    Returns (from ``compute_metrics``):
        dict: ``bbox_mAP``, ``bbox_mAP_50``, ``bbox_mAP_75``, ``bbox_mAP_s``, ``bbox_mAP_m``, ``bbox_mAP_l``,
        ``bbox_AR@1``, ``bbox_AR@10``, ``bbox_AR@100``, ``bbox_AR_s@100``, ``bbox_AR_m@100``, ``bbox_AR_l@100``
        (names follow ``proposal_nums``), plus ``bbox_<class>_precision`` per class when ``classwise``.
    """

    def __init__(self,
                 box_plus_one: bool = True,
                 metric: str = 'bbox',
                 proposal_nums: Sequence[int] = (1, 10, 100),
                 **kwargs) -> None:
        super().__init__(metric=metric, proposal_nums=proposal_nums, **kwargs)
        if self.metrics != ['bbox']:
            raise ValueError(f'{type(self).__name__} only evaluates boxes (metric="bbox"), got {self.metrics}.')
        if len(self.proposal_nums) != 3:
            raise ValueError('proposal_nums must hold the three COCOeval maxDets, e.g. (1, 10, 100), '
                             f'got {self.proposal_nums}.')
        self.box_plus_one = box_plus_one
        self.ann_file = kwargs.get('ann_file', None)
        names = self._stat_names()
        if self.metric_items is not None:
            unknown = [item for item in self.metric_items if item not in names]
            if unknown:
                raise KeyError(f'metric items {unknown} are not supported; choose from {names}.')

    def _stat_names(self) -> List[str]:
        """Names of the 12 ``COCOeval.stats`` entries, in pycocotools' order."""
        n1, n2, n3 = self.proposal_nums
        return list(_AP_NAMES) + [f'AR@{n1}', f'AR@{n2}', f'AR@{n3}', f'AR_s@{n3}', f'AR_m@{n3}', f'AR_l@{n3}']

    def xyxy2xywh(self, bbox: np.ndarray) -> list:
        """Convert one xyxy box (original-image pixels) to the COCO json ``[x, y, w, h]``.

        Args:
            bbox (np.ndarray): Shape (4, ), ``[x1, y1, x2, y2]``.

        Returns:
            list[float]: ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` if ``box_plus_one`` else
            ``[x1, y1, x2 - x1, y2 - y1]``.
        """
        x1, y1, x2, y2 = bbox.tolist()
        offset = 1 if self.box_plus_one else 0
        return [x1, y1, x2 - x1 + offset, y2 - y1 + offset]

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Evaluate the collected results with pycocotools.

        Args:
            results (list): ``(gt, pred)`` pairs from :meth:`process` for the whole split; ``pred`` holds
                ``img_id``, ``bboxes`` (N, 4) xyxy, ``scores`` (N, ) and ``labels`` (N, ) 0-based class indices.

        Returns:
            Dict[str, float]: see the class docstring. Empty when ``format_only`` is set or nothing was detected
            on the whole split (logged as an error, like mmdet).
        """
        logger: MMLogger = MMLogger.get_current_instance()
        gts, preds = zip(*results)

        tmp_dir = None
        if self.outfile_prefix is None:
            tmp_dir = tempfile.TemporaryDirectory()
            outfile_prefix = osp.join(tmp_dir.name, 'results')
        else:
            outfile_prefix = self.outfile_prefix

        try:
            if self._coco_api is None:
                logger.info('Converting ground truth to coco format...')
                coco_json_path = self.gt_to_coco_json(gt_dicts=gts, outfile_prefix=outfile_prefix)
                self._coco_api = COCO(coco_json_path)
            if self.cat_ids is None:
                self.cat_ids = self._coco_api.get_cat_ids(cat_names=self.dataset_meta['classes'])
            if self.img_ids is None:
                self.img_ids = self._coco_api.get_img_ids()
                warn_gt_boxes_outside_images(self._coco_api, self.ann_file, logger)

            result_files = self.results2json(preds, outfile_prefix)
            if self.format_only:
                logger.info(f'results are saved in {osp.dirname(outfile_prefix)}')
                return OrderedDict()
            predictions = load(result_files['bbox'])
        finally:
            if tmp_dir is not None:
                tmp_dir.cleanup()

        names = self._stat_names()
        wanted = names if self.metric_items is None else list(self.metric_items)
        if len(predictions) == 0:
            # no detection at all: every AP / AR is 0 (pycocotools cannot load an empty result). Reported as 0,
            # not left out, so that a fine-tuning run's plateau, early stop and best checkpoint count it.
            logger.warning(f'no detections on the {len(self.img_ids)} images: every metric is 0')
            return OrderedDict((f'bbox_{name}', 0.0) for name in wanted)

        coco_dt = self._coco_api.loadRes(predictions)
        coco_eval = COCOeval(self._coco_api, coco_dt, 'bbox')
        coco_eval.params.catIds = self.cat_ids
        coco_eval.params.imgIds = self.img_ids
        coco_eval.params.maxDets = list(self.proposal_nums)
        coco_eval.params.iouThrs = self.iou_thrs
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()

        eval_results = OrderedDict()
        for name in wanted:
            eval_results[f'bbox_{name}'] = float(coco_eval.stats[names.index(name)])

        if self.classwise:
            # precision: (iou, recall, class, area range, max dets); area 'all', largest maxDets.
            precisions = coco_eval.eval['precision']
            for idx, cat_id in enumerate(self.cat_ids):
                precision = precisions[:, :, idx, 0, -1]
                precision = precision[precision > -1]
                ap = float(np.mean(precision)) if precision.size else float('nan')
                name = self._coco_api.loadCats(cat_id)[0]['name']
                eval_results[f'bbox_{name}_precision'] = ap
                logger.info(f'bbox AP of {name}: {ap:.4f}')

        ap = coco_eval.stats[:6]
        logger.info('bbox_mAP_copypaste: ' + ' '.join(f'{v:.3f}' for v in ap))
        return eval_results
