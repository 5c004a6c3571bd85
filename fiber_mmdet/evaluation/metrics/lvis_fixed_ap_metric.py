"""LVIS Fixed AP (Dave et al., 2021) as evaluated by FIBER, gathered on rank 0 only.

Protocol (``MB/data/datasets/evaluation/lvis/lvis_eval.py:767-872``, ``LvisEvaluatorFixedAP``): predicted boxes are
written as xywh **without** "+1"; per category, over the whole split, the ``topk`` (10,000) highest-scoring
detections are kept (no per-image cap, the cap is applied *before* LVIS' federated filtering so ignored detections
still take slots); then ``LVISResults(max_dets=-1)`` + ``LVISEval`` with ``params.max_dets = -1``.
"""
import contextlib
import logging
import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
from mmengine.dist import (broadcast_object_list, collect_results_cpu, get_world_size, is_main_process)
from mmengine.fileio import dump
from mmengine.logging import MMLogger, print_log
from lvis import LVISEval, LVISResults

from mmdet.evaluation.metrics.lvis_metric import LVISFixedAPMetric
from mmdet.registry import METRICS

# Kept detections of one category: a float64 array (N, 7) of rows (-score, image_id, index in the image's
# prediction list, x, y, w, h) - 56 bytes per detection instead of a Python dict. Sorting rows by
# (-score, image_id, index) gives "descending score, ties -> smaller image_id first, then earlier detection": the
# reference's stable merge when images are fed in ascending image_id (the LVIS dataset order, one process). Using
# the image id instead of the arrival order makes the result independent of how images were spread over ranks.
# float64 holds float32 scores/coordinates and image ids exactly.
_NEG_SCORE, _IMG_ID, _INDEX = 0, 1, 2


def _top_rows(chunks: List[np.ndarray], topk: int) -> np.ndarray:
    """Concatenate detection rows and keep the ``topk`` first in protocol order."""
    rows = np.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0]
    order = np.lexsort((rows[:, _INDEX], rows[:, _IMG_ID], rows[:, _NEG_SCORE]))
    return rows[order[:topk]]


@contextlib.contextmanager
def numpy_float_alias_for_lvis() -> Iterator[None]:
    """Temporarily restore the ``np.float`` alias that ``lvis==0.5.3`` needs.

    ``lvis/eval.py`` (``LVISEval.accumulate``) calls ``astype(dtype=np.float)``; the alias was removed in
    numpy 1.24 and the fix (lvis-api PR #42) was never released on PyPI. Inside this context ``np.float`` is the
    builtin ``float`` (what the alias always meant); on exit numpy is left exactly as it was. Does nothing when
    the attribute already exists (old numpy).
    """
    if 'float' in vars(np):
        yield
        return
    np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del np.float  # type: ignore[attr-defined]


def drop_duplicate_images(parts: List[Dict[int, np.ndarray]], img_ids: List[List[int]],
                          size: int) -> List[Dict[int, np.ndarray]]:
    """Keep each image's detections from one rank only: the lowest rank that processed it.

    Args:
        parts (list[dict]): Per rank, ``{category_id: rows (N, 7)}`` (see ``_top_rows``).
        img_ids (list[list[int]]): Per rank, the ids of the images it processed.
        size (int): Length of the dataset (distinct images expected).

    Returns:
        list[dict]: ``parts`` without the rows of images whose copy is kept from a lower rank.
    """
    logger: MMLogger = MMLogger.get_current_instance()
    owner: Dict[int, int] = {}
    repeated = set()
    copies = 0
    for rank, ids in enumerate(img_ids):
        for img_id in ids:
            if img_id in owner:
                copies += 1
                repeated.add(img_id)
            else:
                owner[img_id] = rank
    if len(owner) != size:
        logger.warning(f'LVIS Fixed AP: {len(owner)} distinct images were evaluated, but the dataset has {size}.')
    if copies == 0:
        return parts
    duplicated = sorted(repeated)
    logger.info(f'LVIS Fixed AP: {copies} padded duplicate image(s) (the sampler gives every rank as many images) '
                f'are evaluated once, from the lowest rank that processed them: image ids {duplicated[:20]}'
                + (f' and {len(duplicated) - 20} more' if len(duplicated) > 20 else ''))
    kept_parts = []
    for rank, part in enumerate(parts):
        own = set(img_ids[rank])
        foreign = np.array([i for i in duplicated if owner[i] != rank and i in own], dtype=np.float64)
        if len(foreign) == 0:
            kept_parts.append(part)
            continue
        kept_parts.append({cat_id: rows[~np.isin(rows[:, _IMG_ID], foreign)] for cat_id, rows in part.items()})
    return kept_parts


@METRICS.register_module()
class LVISFixedAPRank0Metric(LVISFixedAPMetric):
    """LVIS box Fixed AP with a per-category cap over the split, merged on rank 0 only.

    Same protocol as mmdet's :class:`~mmdet.evaluation.metrics.lvis_metric.LVISFixedAPMetric` (which this
    subclasses for its construction: ``ann_file``, ``topk``, ``format_only``, ``outfile_prefix``), with these
    fixes:

    * **Memory**: each rank keeps at most ``2 * topk`` detections per category while processing, as compact
      float64 rows (56 bytes per detection, not a dict), and at ``evaluate`` the per-rank lists go to **rank 0
      only** (mmengine's ``collect_results_cpu``, through a temporary directory on a shared file system),
      instead of mmdet's ``all_gather_object`` that copies every rank's detections to every rank.
    * **Ties**: the cap keeps detections by descending score with ties broken by ascending image id, then by the
      order in the image's prediction list - the reference's single-process order, whatever the number of ranks.
    * **Padded duplicates**: MMEngine's ``DefaultSampler`` pads the last round so that every rank gets as many
      images as the others, so under several ranks a few images are predicted twice. Each rank reports the image
      ids it processed; rank 0 keeps every image's detections from one rank only (the lowest that processed it),
      counts and logs the duplicates, and warns when the number of distinct images differs from the dataset's
      size. Without this the duplicates' detections enter LVISEval twice (one copy a false positive), and AP
      depends on the number of GPUs. Dropping them after the per-rank cap loses nothing: a rank holds each image
      once, so a detection its cap dropped had ``topk`` distinct better ones on that rank alone.
    * **numpy 2.x**: ``lvis==0.5.3`` is run inside :func:`numpy_float_alias_for_lvis` (no site-packages edit).
    * Full-precision results, including AR.

    ``process`` reads ``pred_instances`` with ``bboxes`` (N, 4) xyxy in original-image pixels, ``scores`` (N, )
    and ``labels`` (N, ) 0-based indices into the annotation file's category list (mmdet's ``LVISV1Dataset``
    order). For chunked prompts, the detector concatenates all chunks of an image into one ``pred_instances``.
    The per-category state lives outside ``self.results``, so this metric cannot be wrapped by
    ``MultiDatasetsEvaluator`` (which slices ``results`` per dataset); use it as the evaluator's only metric.

    Args:
        ann_file (str): LVIS-format annotation file (e.g. ``lvis_v1_minival_inserted_image_name.json``).
        topk (int): Detections kept per category over the whole split. Defaults to 10000.
        format_only (bool): Only dump the kept detections to ``{outfile_prefix}.bbox.json``. Defaults to False.
        outfile_prefix (str, optional): Where to dump the kept detections (also written when not
            ``format_only``). Defaults to None (not written).
        collect_device (str): Only ``'cpu'`` is supported (rank-0 gathering goes through files).
        prefix (str, optional): Metric name prefix. Defaults to ``'lvis_fixed_ap'``.
        backend_args (dict, optional): File backend arguments for ``ann_file``.

    Returns (from ``evaluate``):
        dict: ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``APr``, ``APc``, ``APf``, ``AR``, ``ARs``,
        ``ARm``, ``ARl`` (LVIS' ``AR@-1`` etc., renamed), with the prefix.
    """

    def __init__(self,
                 ann_file: str,
                 topk: int = 10000,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 backend_args: Optional[dict] = None) -> None:
        if collect_device != 'cpu':
            raise ValueError(f"{type(self).__name__} gathers on rank 0 through files; use collect_device='cpu'.")
        if topk < 1:
            raise ValueError(f'topk must be positive, got {topk}.')
        super().__init__(
            ann_file=ann_file,
            topk=topk,
            format_only=format_only,
            outfile_prefix=outfile_prefix,
            collect_device=collect_device,
            prefix=prefix,
            backend_args=backend_args)
        # mmdet's parent stores its per-category lists in ``self.results`` (a dict); ours live in
        # ``self._kept`` and ``self.results`` stays the empty list mmengine expects.
        self.results: list = []
        self._kept: Dict[int, List[np.ndarray]] = defaultdict(list)
        self._num_kept: Dict[int, int] = defaultdict(int)
        self._img_ids: List[int] = []  # every processed image, with or without detections

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Convert one batch of predictions to CPU detection rows and apply the per-category cap locally.

        Args:
            data_batch (dict): Unused.
            data_samples (Sequence[dict]): Data samples with ``img_id`` and ``pred_instances``.
        """
        for data_sample in data_samples:
            self._img_ids.append(int(data_sample['img_id']))
            pred = data_sample['pred_instances']
            bboxes = pred['bboxes'].detach().cpu().numpy()
            scores = pred['scores'].detach().cpu().numpy()
            labels = pred['labels'].detach().cpu().numpy()
            num = len(scores)
            if num == 0:
                continue
            # xywh without "+1", computed in the boxes' own precision (float32), like the reference.
            wh = bboxes[:, 2:] - bboxes[:, :2]
            rows = np.empty((num, 7), dtype=np.float64)
            rows[:, _NEG_SCORE] = -scores.astype(np.float64)
            rows[:, _IMG_ID] = int(data_sample['img_id'])
            rows[:, _INDEX] = np.arange(num)
            rows[:, 3:5] = bboxes[:, :2]
            rows[:, 5:7] = wh
            for label in np.unique(labels).tolist():
                cat_id = self.cat_ids[label]
                cat_rows = rows[labels == label]
                self._kept[cat_id].append(cat_rows)
                self._num_kept[cat_id] += len(cat_rows)
                if self._num_kept[cat_id] > 2 * self.topk:
                    kept = _top_rows(self._kept[cat_id], self.topk)
                    self._kept[cat_id] = [kept]
                    self._num_kept[cat_id] = len(kept)

    def evaluate(self, size: int) -> dict:
        """Gather the per-rank detections on rank 0, drop the sampler's padded duplicates, evaluate there and
        broadcast the metrics.

        Args:
            size (int): Length of the evaluated dataset (the number of distinct images expected).

        Returns:
            dict: Metrics with the prefix, on every rank.
        """
        if len(self._kept) == 0:
            print_log(f'{type(self).__name__} got no detection on this rank.', logger='current',
                      level=logging.WARNING)
        local = {cat_id: _top_rows(chunks, self.topk) for cat_id, chunks in self._kept.items()}
        gathered = collect_results_cpu([(local, self._img_ids)], get_world_size())

        if is_main_process():
            parts = drop_duplicate_images([p for p, _ in gathered], [ids for _, ids in gathered], size)
            _metrics = self.compute_metrics(parts)
            if self.prefix:
                _metrics = {'/'.join((self.prefix, k)): v for k, v in _metrics.items()}
            metrics = [_metrics]
        else:
            metrics = [None]
        broadcast_object_list(metrics)
        self._kept = defaultdict(list)
        self._num_kept = defaultdict(int)
        self._img_ids = []
        self.results.clear()
        return metrics[0]

    def compute_metrics(self, results: List[Dict[int, np.ndarray]]) -> Dict[str, float]:
        """Merge the per-rank lists, keep ``topk`` per category and run LVIS' evaluation.

        Args:
            results (list[dict]): One ``{category_id: rows (N, 7)}`` per rank (see ``_top_rows``).

        Returns:
            Dict[str, float]: see the class docstring (empty when ``format_only`` or when nothing was detected).
        """
        logger: MMLogger = MMLogger.get_current_instance()
        merged: Dict[int, List[np.ndarray]] = defaultdict(list)
        for part in results:
            for cat_id, rows in part.items():
                merged[cat_id].append(rows)

        lvis_results = []
        num_short = 0
        for cat_id in sorted(merged):
            kept = _top_rows(merged[cat_id], self.topk)
            num_short += len(kept) < self.topk
            lvis_results.extend(
                dict(image_id=int(img_id), category_id=cat_id, bbox=[x, y, w, h], score=-neg_score)
                for neg_score, img_id, _, x, y, w, h in kept.tolist())
        logger.info(f'{num_short} of {len(merged)} detected categories have fewer than {self.topk} detections '
                    f'over the split; {len(self.cat_ids) - len(merged)} categories have none.')

        if self.outfile_prefix is not None:
            out_file = f'{self.outfile_prefix}.bbox.json'
            dump(lvis_results, out_file)
            logger.info(f'kept detections written to {osp.abspath(out_file)}')
        if self.format_only:
            return OrderedDict()
        if len(lvis_results) == 0:
            logger.error('The testing results of the whole dataset is empty.')
            return OrderedDict()

        with numpy_float_alias_for_lvis():
            lvis_dt = LVISResults(self._lvis_api, lvis_results, max_dets=-1)
            lvis_eval = LVISEval(self._lvis_api, lvis_dt, iou_type='bbox')
            lvis_eval.params.max_dets = -1  # no per-image limit
            lvis_eval.run()
        lvis_eval.print_results()

        metrics = OrderedDict()
        for key, value in lvis_eval.results.items():
            # LVIS names recall after max_dets ('AR@-1', 'ARs@-1', ...); -1 means "no limit" here.
            metrics[key.replace('@-1', '')] = float(value)
        logger.info(f'LVIS Fixed AP: {metrics}')
        return metrics
