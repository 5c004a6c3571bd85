"""Flickr30k Entities phrase grounding Recall@k (FIBER / MDETR protocol), with flat scalar keys."""
import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.fileio import get_local_path
from mmengine.logging import MMLogger

from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation.metrics import Flickr30kMetric
from mmdet.registry import METRICS
from mmdet.structures.bbox import bbox_overlaps

# A phrase with no detection still gets this box (it never matches), as in the reference's post-processing.
_DUMMY_BOX = np.zeros((1, 4), dtype=np.float32)
# the results entry of another dataset's sample (a string: it survives pickling between ranks)
NOT_GROUNDING = 'not a phrase-grounding sample'


def parse_flickr30k_sentences(path: str) -> List[Dict[int, List[str]]]:
    """Read the phrase types of a Flickr30k Entities ``Sentences/<image>.txt`` file.

    Each line is a sentence such as ``[/EN#128909/people Two men] sits beside [/EN#0/notvisual something] .``.
    The MDETR annotation files build the caption as the sentence's words joined by single spaces and give each
    phrase as a character span in that caption, so phrases are keyed here by the character offset at which they
    start.

    Args:
        path (str): Path of the sentences file.

    Returns:
        list[dict]: One dict per sentence (line order = MDETR's ``sentence_id``): phrase start offset in the
        caption -> list of phrase types (e.g. ``['people', 'other']``).
    """
    sentences = []
    with open(path, encoding='utf-8') as f:
        for line in f.read().split('\n'):
            if not line:
                continue
            words: List[str] = []
            types_by_start: Dict[int, List[str]] = {}
            in_phrase = False
            for token in line.split(' '):
                if not token:
                    continue
                if not in_phrase and token.startswith('['):
                    # '[/EN#<entity id>/<type>[/<type>...]' opens a phrase; its words follow.
                    start = len(' '.join(words)) + (1 if words else 0)
                    types_by_start[start] = token.split('/')[2:]
                    in_phrase = True
                    continue
                if in_phrase and token.endswith(']'):
                    token = token[:-1]
                    in_phrase = False
                words.append(token)
            sentences.append(types_by_start)
    return sentences


@METRICS.register_module()
class Flickr30kRecallMetric(Flickr30kMetric):
    """Phrase grounding Recall@k with the ANY-box rule, flat scalar keys and optional per-type recall.

    FIBER evaluates Flickr30k Entities with MDETR's ``FlickrEvaluator`` (``MB/data/datasets/evaluation/flickr/
    flickr_eval.py``, ``FLICKR_GT_TYPE "separate"``): for every phrase that has ground-truth boxes, its predicted
    boxes are ranked by descending score, a dummy ``[0, 0, 0, 0]`` is appended, and the phrase is correct at ``k``
    if any of its first ``k`` boxes has IoU (no "+1") >= ``iou_thrs`` with **any** of its ground-truth boxes
    (``k = -1``: all boxes, the upper bound). ``merge_boxes=True`` replaces a phrase's ground-truth boxes by their
    enclosing box (MDETR's "merged" protocol).

    Subclass of mmdet's :class:`~mmdet.evaluation.metrics.Flickr30kMetric`; what changes:

    * flat ``float`` results (``Recall@1_all``...) instead of nested dicts, so they log and can drive ``save_best``;
    * ``process`` keeps CPU numpy arrays only (mmdet keeps the whole ``pred_instances``, possibly on GPU);
    * predictions are explicitly ranked by score, phrases without ground truth are skipped (mmdet crashes on
      them), ``merge_boxes=True`` works (mmdet's has a typo);
    * per-phrase-type recall when the raw Flickr30k Entities ``Sentences`` are given.

    Inputs (what mmdet's ``Flickr30kDataset`` + ``PackDetInputs`` with ``phrase_ids``/``phrases`` in ``meta_keys``
    produce): ``gt_instances.bboxes`` (M, 4) xyxy in original pixels (``LoadAnnotations`` after the resize, as in
    mmdet's configs), ``phrase_ids`` (M, ) phrase index of each box, ``phrases`` (one string per phrase of
    ``tokens_positive_eval``), ``img_id``; ``pred_instances`` with ``bboxes`` xyxy in original pixels, ``scores``,
    and ``labels`` where label ``i`` (0-based) is phrase ``i``.

    Args:
        topk (Sequence[int]): Recall cut-offs; -1 is the upper bound. Defaults to ``(1, 5, 10, -1)``.
        iou_thrs (float): IoU threshold (inclusive). Defaults to 0.5.
        merge_boxes (bool): Merge each phrase's ground-truth boxes into their enclosing box. Defaults to False
            (the FIBER protocol).
        ann_file (str, optional): The MDETR annotation file the dataset reads (``final_flickr_separateGT_*.json``);
            needed only for per-type recall (it maps ``img_id`` to the image and sentence). Defaults to None.
        sentences_dir (str, optional): Flickr30k Entities ``Sentences`` directory (``<image id>.txt`` files). With
            ``ann_file``, adds ``Recall@k_<type>`` for every phrase type. Defaults to None (``all`` only).
        collect_device (str): Device for collecting results across ranks. Defaults to ``'cpu'``.
        prefix (str, optional): Metric name prefix. Defaults to ``'flickr30k'``.
        backend_args (dict, optional): File backend arguments for ``ann_file``.

    Returns (from ``compute_metrics``):
        dict: ``Recall@{k}_{category}`` for ``k > 0`` and ``Upper_bound_{category}`` for ``k = -1``, category
        ``all`` and, with ``sentences_dir``, each phrase type seen (a phrase counts once for ``all`` and once for
        each of its types).
    """
    default_prefix: Optional[str] = 'flickr30k'

    def __init__(self,
                 topk: Sequence[int] = (1, 5, 10, -1),
                 iou_thrs: float = 0.5,
                 merge_boxes: bool = False,
                 ann_file: Optional[str] = None,
                 sentences_dir: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 backend_args: Optional[dict] = None) -> None:
        super().__init__(
            topk=topk, iou_thrs=iou_thrs, merge_boxes=merge_boxes, collect_device=collect_device, prefix=prefix)
        if any(k != -1 and k < 1 for k in self.topk):
            raise ValueError(f'topk values must be positive or -1, got {self.topk}.')
        if sentences_dir is not None and ann_file is None:
            raise ValueError('sentences_dir (per-type recall) needs ann_file to map img_id to image and sentence.')
        self.sentences_dir = sentences_dir
        self._coco = None
        if ann_file is not None:
            with get_local_path(ann_file, backend_args=backend_args) as local_path:
                self._coco = COCO(local_path)
        self._sentence_cache: Dict[str, List[Dict[int, List[str]]]] = {}

    def merge_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Return the smallest box enclosing all ``boxes``.

        Args:
            boxes (np.ndarray): (M, 4) xyxy boxes, M >= 1.

        Returns:
            np.ndarray: (1, 4) enclosing box.
        """
        boxes = np.asarray(boxes).reshape(-1, 4)
        return np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])[None]

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Collect CPU predictions and ground truth of one batch.

        Args:
            data_batch (dict): Unused.
            data_samples (Sequence[dict]): Data samples as described in the class docstring.
        """
        for data_sample in data_samples:
            if 'phrase_ids' not in data_sample:
                # a sample of another dataset in a multi-dataset evaluation: keep one entry per sample so the
                # evaluator's per-dataset slicing stays aligned; compute_metrics skips it. Not None: MMEngine's
                # collect_results drops None entries when it merges the ranks' results, which shifts the slices
                self.results.append(NOT_GROUNDING)
                continue
            pred = data_sample['pred_instances']
            gt_bboxes = data_sample['gt_instances']['bboxes']
            if isinstance(gt_bboxes, torch.Tensor):
                gt_bboxes = gt_bboxes.detach().cpu().numpy()
            else:  # an mmdet box structure (HorizontalBoxes)
                gt_bboxes = gt_bboxes.tensor.detach().cpu().numpy()
            phrase_ids = np.asarray(data_sample['phrase_ids'], dtype=np.int64).reshape(-1)
            if len(phrase_ids) != len(gt_bboxes):
                raise ValueError(f'image {data_sample["img_id"]}: {len(gt_bboxes)} ground-truth boxes but '
                                 f'{len(phrase_ids)} phrase_ids.')
            self.results.append(
                dict(
                    img_id=data_sample['img_id'],
                    num_phrases=len(data_sample['phrases']),
                    pred_bboxes=pred['bboxes'].detach().cpu().numpy(),
                    pred_scores=pred['scores'].detach().cpu().numpy(),
                    pred_labels=pred['labels'].detach().cpu().numpy(),
                    gt_bboxes=gt_bboxes,
                    gt_phrase_ids=phrase_ids))

    def _phrase_types(self, img_id: int) -> Dict[int, List[str]]:
        """Phrase types of one evaluated (image, sentence), keyed by phrase index in ``tokens_positive_eval``."""
        info = self._coco.load_imgs([img_id])[0]
        image_name = str(info.get('original_img_id', osp.splitext(info['file_name'])[0]))
        if image_name not in self._sentence_cache:
            self._sentence_cache[image_name] = parse_flickr30k_sentences(
                osp.join(self.sentences_dir, f'{image_name}.txt'))
        types_by_start = self._sentence_cache[image_name][int(info['sentence_id'])]
        phrase_types = {}
        for index, spans in enumerate(info['tokens_positive_eval']):
            start = spans[0][0]
            if start not in types_by_start:
                raise KeyError(f'phrase {index} of image {img_id} (chars {spans}) does not start a phrase of '
                               f'{image_name}.txt sentence {info["sentence_id"]}.')
            phrase_types[index] = types_by_start[start]
        return phrase_types

    def _phrase_hits(self, result: dict) -> List[Tuple[int, Dict[int, bool]]]:
        """For each phrase with ground truth: (phrase index, {k: correct at k})."""
        pred_bboxes = result['pred_bboxes'].reshape(-1, 4)
        pred_scores = result['pred_scores'].reshape(-1)
        pred_labels = result['pred_labels'].reshape(-1)
        gt_bboxes = result['gt_bboxes'].reshape(-1, 4)
        hits = []
        for phrase in range(result['num_phrases']):
            targets = gt_bboxes[result['gt_phrase_ids'] == phrase]
            if len(targets) == 0:
                continue  # the reference drops phrases without boxes
            if self.merge:
                targets = self.merge_boxes(targets)
            mine = np.flatnonzero(pred_labels == phrase)
            ranked = pred_bboxes[mine[np.argsort(-pred_scores[mine], kind='stable')]]
            ranked = np.concatenate([ranked.astype(np.float32), _DUMMY_BOX], axis=0)
            ious = bbox_overlaps(
                torch.from_numpy(ranked), torch.from_numpy(targets.astype(np.float32))).numpy()
            best_per_rank = ious.max(axis=1)
            hits.append((phrase, {
                k: bool((best_per_rank if k == -1 else best_per_rank[:k]).max() >= self.iou_thrs)
                for k in self.topk
            }))
        return hits

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Compute Recall@k over all phrases (and per phrase type).

        Args:
            results (list): Dicts from :meth:`process`.

        Returns:
            Dict[str, float]: see the class docstring.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        with_types = self.sentences_dir is not None
        positives: Dict[str, Dict[int, int]] = defaultdict(lambda: defaultdict(int))
        totals: Dict[str, int] = defaultdict(int)
        for result in results:
            if isinstance(result, str):  # NOT_GROUNDING: not a phrase-grounding sample (see process)
                continue
            phrase_types = self._phrase_types(result['img_id']) if with_types else {}
            for phrase, hit_at in self._phrase_hits(result):
                for category in ['all'] + list(phrase_types.get(phrase, [])):
                    totals[category] += 1
                    for k, hit in hit_at.items():
                        positives[category][k] += hit

        if totals['all'] == 0:
            logger.error('No phrase with ground-truth boxes was evaluated.')
            return OrderedDict()
        out_results: Dict[str, float] = OrderedDict()
        for k in self.topk:
            name = 'Upper_bound' if k == -1 else f'Recall@{k}'
            for category in ['all'] + sorted(c for c in totals if c != 'all'):
                out_results[f'{name}_{category}'] = positives[category][k] / totals[category]
        logger.info(f'Flickr30k recall over {totals["all"]} phrases: {dict(out_results)}')
        return out_results
