"""Detection sample -> FIBER grounding caption (reference ``MB/data/datasets/od_to_grounding.py``).

The output has exactly the contract of mmdet's :class:`~mmdet.datasets.transforms.RandomSamplingNegPos`, so the
detector treats FIBER's captions and Grounding-DINO's the same way:

* ``results['text']``: the caption string;
* ``results['tokens_positive']``: ``{label: [[beg, end], ...]}`` character spans keyed by the (remapped)
  ``results['gt_bboxes_labels']``.

Differences to mmdet's ``RandomSamplingNegPos`` (each one is the reference's behaviour):

* the control draw has four outcomes (1 negative / 0 negatives / all negatives / 1 + randint), not two;
* the negative candidates include the background entry (rendered ``" background "`` by :func:`clean_name`);
* a class that is a positive is never also written as a negative (mmdet compares ``str`` keys with ``int`` labels
  and can write a positive twice, once as an untargeted "negative");
* no trailing ``". "`` after the last name, names are not lower-cased, ``a/b`` names are not split;
* the token budget is ``max_tokens - 2`` (room for ``<s>`` and ``</s>``);
* the VG path keeps the caption verbatim (mmdet lower-cases it and appends ``". "``);
* dropped boxes are removed from every per-instance key (``gt_ignore_flags`` too) and are reported.
"""
import json
import random
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import MMLogger

from mmdet.registry import TRANSFORMS
from fiber_mmdet.utils.positive_map import build_positive_map
from fiber_mmdet.utils.prompts import build_class_prompt, clean_name
from .text_tokenizer import LazyTokenizer

BACKGROUND_KEY = '__background__'
INSTANCE_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags', 'gt_masks')


def _key_order(key: str) -> Tuple[int, int, str]:
    """Numeric keys in numeric order, then the others; a fixed order before shuffling keeps seeded runs
    reproducible across processes (``set`` order of ``str`` keys depends on ``PYTHONHASHSEED``)."""
    return (0, int(key), '') if key.lstrip('-').isdigit() else (1, 0, key)


def filter_instances(results: dict, keep: np.ndarray) -> None:
    """Keep the instances whose index is in ``keep`` in every per-instance key of ``results`` (in place)."""
    keep = np.asarray(keep, dtype=np.int64)
    for key in INSTANCE_KEYS:
        if results.get(key) is not None:
            results[key] = results[key][keep]


@TRANSFORMS.register_module()
class ODToGroundingCaption(BaseTransform):
    """Build FIBER's pre-training caption from a detection sample (Objects365 path), pass grounding samples through.

    Detection (OD) samples, in order:

    1. *Positive-overflow guard*: the positive classes are shuffled and walked, adding
       ``len(tokenizer.tokenize(clean_name(name) + '. '))`` each; from the first class that would exceed the
       budget ``max_tokens - 2`` on, classes and all their boxes are dropped (and reported).
    2. *Control draw* ``u ~ U(0, 1)`` with ``control_prob = (p1, p2, p3, p4)``: ``u < p1`` -> 1 negative;
       ``u < p1 + p2`` -> 0 negatives; ``u < p1 + p2 + p3`` -> ``full_negative = min(num_sample_negative,
       #classes + 1)`` (the background entry counts); otherwise ``1 + randint(max(1, full_negative))``.
       ``p4`` is the reference's "drop positives" probability. The released reference asserts it is 0 and so
       crashes with PRE.yaml's ``(0.05, 0.05, 0.5, 0.2)`` (FIBER issue #10); here it is accepted and has no
       effect: **all positives are always kept** (its coin is still drawn so the random stream matches).
    3. Negatives: that many distinct ids are drawn from *all* class ids plus the background entry; drawn ids that
       are positives are discarded.
    4. Positives and negatives are shuffled separately; negatives are pre-screened against the remaining budget
       (a negative is kept while the remaining budget stays > 0, as in the reference).
    5. Caption = shuffle(negatives + positives), names cleaned and joined by ``separation_tokens`` (no trailing
       separator). Labels are remapped to the position of their class in that list.

    Grounding (VG) samples (``'phrases'`` in ``results``, from ``ODVGDataset`` in VG mode) keep their caption
    verbatim; ``tokens_positive`` comes from the phrases of the boxes present.

    Spans that map to no token of the caption tokenised to ``max_tokens`` (checked with
    :func:`~fiber_mmdet.utils.build_positive_map`) are counted and reported, as are boxes dropped by the guard.

    Required Keys:

    - gt_bboxes (BaseBoxes | np.ndarray), gt_bboxes_labels (np.int64)
    - text (dict[str, str] label map or tuple of class names for OD, str caption for VG) -- for OD it may come
      from ``label_map_file``
    - phrases (dict[int, dict], VG only)
    - gt_ignore_flags, gt_masks (optional; filtered with the boxes)

    Modified Keys:

    - text: the caption (str)
    - gt_bboxes, gt_bboxes_labels, gt_ignore_flags, gt_masks: overflow-dropped boxes removed, labels remapped

    Added Keys:

    - tokens_positive (dict[int, list[list[int]]]): character spans per label

    Args:
        tokenizer_name (str): HF name or local directory of the text encoder's tokenizer; loaded lazily, once per
            dataloader worker.
        num_sample_negative (int): maximum number of negatives (RANDOM_SAMPLE_NEG). Defaults to 85.
        max_tokens (int): caption length in tokens including ``<s>``/``</s>``. Defaults to 256.
        control_prob (Sequence[float]): CONTROL_PROB, see above. Defaults to (0.05, 0.05, 0.5, 0.2).
        separation_tokens (str): between names. Defaults to ``'. '``.
        label_map_file (str, optional): JSON ``{label: name}`` used when ``results['text']`` is absent.
        background_name (str, optional): name of the extra negative candidate (reference: ``'__background__'``);
            ``None`` to leave it out. Defaults to ``'__background__'``.
        check_spans (bool): tokenise each caption and report spans that map to no token. Defaults to True.
    """

    def __init__(self,
                 tokenizer_name: str,
                 num_sample_negative: int = 85,
                 max_tokens: int = 256,
                 control_prob: Sequence[float] = (0.05, 0.05, 0.5, 0.2),
                 separation_tokens: str = '. ',
                 label_map_file: Optional[str] = None,
                 background_name: Optional[str] = '__background__',
                 check_spans: bool = True) -> None:
        control_prob = tuple(float(p) for p in control_prob)
        if len(control_prob) != 4 or any(not 0.0 <= p <= 1.0 for p in control_prob) \
                or sum(control_prob[:3]) > 1.0 + 1e-9:
            raise ValueError('control_prob must be 4 probabilities in [0, 1] whose first three sum to <= 1, '
                             f'got {control_prob}')
        if max_tokens <= 2:
            raise ValueError(f'max_tokens must leave room for <s> and </s>, got {max_tokens}')
        self.tokenizer_name = tokenizer_name
        self._tokenizer = LazyTokenizer(tokenizer_name)
        self.num_sample_negative = int(num_sample_negative)
        self.max_tokens = int(max_tokens)
        self.budget = self.max_tokens - 2
        self.control_prob = control_prob
        self.separation_tokens = separation_tokens
        self.label_map_file = label_map_file
        self.label_map = None
        if label_map_file:
            with open(label_map_file, 'r', encoding='utf-8') as f:
                self.label_map = {str(k): v for k, v in json.load(f).items()}
        self.background_name = background_name
        self.check_spans = check_spans
        self._token_count_cache: Dict[str, int] = {}
        # Running totals in this worker, reported with every warning.
        self.num_samples = 0
        self.num_dropped_boxes = 0
        self.num_dropped_classes = 0
        self.num_unmapped_spans = 0

    @property
    def tokenizer(self):
        return self._tokenizer.tokenizer

    # ----------------------------------------------------------------------------------------------- helpers
    def num_name_tokens(self, name: str) -> int:
        """Tokens ``clean_name(name) + '. '`` costs in the budget. The reference counts ``'. '`` whatever the
        separation tokens are."""
        count = self._token_count_cache.get(name)
        if count is None:
            count = len(self.tokenizer.tokenize(clean_name(name) + '. '))
            self._token_count_cache[name] = count
        return count

    def draw_num_negatives(self, full_negative: int, full_positive: int) -> int:
        """The reference's control draw (``generate_control_options_given_probabilities``), positives ignored."""
        p_one_negative, p_one_positive, p_full, p_drop_positive = self.control_prob
        u = random.random()
        if u < p_one_negative:
            return 1
        if u < p_one_negative + p_one_positive:
            return 0
        if u < p_one_negative + p_one_positive + p_full:
            return full_negative
        random.random()  # the reference's always-true "sample X negatives" coin
        num_negatives = int(np.random.choice(max(1, full_negative))) + 1
        if random.random() < p_drop_positive:
            np.random.choice(max(1, full_positive))  # the reference draws this; positives are kept regardless
        return num_negatives

    def _label_names(self, results: dict) -> Dict[str, str]:
        text = results.get('text')
        if isinstance(text, dict):
            names = {str(k): v for k, v in text.items()}
        elif isinstance(text, (list, tuple)):  # a COCO-style dataset's class list (LVIS fine-tuning)
            names = {str(i): name for i, name in enumerate(text)}
        elif self.label_map is not None:
            names = self.label_map
        else:
            raise ValueError('ODToGroundingCaption needs a label map: results["text"] as a dict (ODVGDataset in '
                             'OD mode with need_text=True) or a class list (return_classes=True), or label_map_file')
        return names

    def _report(self, message: str) -> None:
        MMLogger.get_current_instance().warning(
            f'{self.__class__.__name__}: {message} (totals in this worker: {self.num_dropped_boxes} boxes of '
            f'{self.num_dropped_classes} classes dropped by the {self.budget}-token budget, '
            f'{self.num_unmapped_spans} unmapped spans, {self.num_samples} samples)')

    def _check_spans(self, caption: str, tokens_positive: Dict[int, List[List[int]]]) -> None:
        if not self.check_spans or not tokens_positive:
            return
        tokenized = self.tokenizer(caption, max_length=self.max_tokens, truncation=True)
        unmapped = build_positive_map(tokenized, list(tokens_positive.values()),
                                      num_tokens=self.max_tokens).unmapped
        if unmapped:
            self.num_unmapped_spans += len(unmapped)
            self._report(f'{len(unmapped)} span(s) map to no token of the caption (their boxes get an all-zero '
                         f'token target): {[caption[b:e] for _, (b, e) in unmapped][:5]}')

    # ------------------------------------------------------------------------------------------- transforms
    def transform(self, results: dict) -> dict:
        self.num_samples += 1
        if 'phrases' in results:
            return self.vg_caption(results)
        return self.od_caption(results)

    def vg_caption(self, results: dict) -> dict:
        labels = np.asarray(results['gt_bboxes_labels']).reshape(-1)
        phrases = results['phrases']
        tokens_positive = {
            int(label): [list(map(int, span)) for span in phrases[int(label)]['tokens_positive']]
            for label in np.unique(labels)
        }
        results['tokens_positive'] = tokens_positive
        self._check_spans(results['text'], tokens_positive)
        return results

    def od_caption(self, results: dict) -> dict:
        names = self._label_names(results)
        labels = np.asarray(results['gt_bboxes_labels']).reshape(-1).astype(np.int64)
        keys = [str(int(label)) for label in labels]
        unknown = sorted(set(keys) - set(names), key=_key_order)
        if unknown:
            raise KeyError(f'labels {unknown} are not in the label map ({len(names)} classes)')

        # 1. positive-overflow guard
        positives = sorted(set(keys), key=_key_order)
        random.shuffle(positives)
        kept: List[str] = []
        positive_length = 0
        for key in positives:
            # As in the reference, the length returned includes the class that overflowed, so an overflowing
            # sample gets no negatives.
            positive_length += self.num_name_tokens(names[key])
            if positive_length > self.budget:
                break
            kept.append(key)
        kept_set = set(kept)
        if len(kept) < len(positives):
            keep = np.array([i for i, key in enumerate(keys) if key in kept_set], dtype=np.int64)
            self.num_dropped_boxes += len(keys) - len(keep)
            self.num_dropped_classes += len(positives) - len(kept)
            self._report(f'dropped {len(keys) - len(keep)} of {len(keys)} boxes ({len(positives) - len(kept)} of '
                         f'{len(positives)} classes) whose names do not fit in {self.budget} tokens '
                         f'({results.get("img_path", "")})')
            filter_instances(results, keep)
            keys = [keys[i] for i in keep]

        # 2.-3. control draw and negatives
        candidates = sorted(names, key=_key_order)
        all_names = dict(names)
        if self.background_name is not None and self.background_name not in names.values():
            candidates.append(BACKGROUND_KEY)
            all_names[BACKGROUND_KEY] = self.background_name
        full_negative = min(self.num_sample_negative, len(candidates))
        num_negatives = min(self.draw_num_negatives(full_negative, len(kept)), len(candidates))
        drawn = np.random.choice(len(candidates), size=num_negatives, replace=False)
        negatives = [candidates[i] for i in drawn if candidates[i] not in kept_set]

        # 4. separate shuffles, negative pre-screen
        positives = sorted(kept, key=_key_order)
        random.shuffle(positives)
        random.shuffle(negatives)
        remaining = self.budget - positive_length
        screened = []
        for key in negatives:
            remaining -= self.num_name_tokens(all_names[key])
            if remaining > 0:
                screened.append(key)
            else:
                break

        # 5. caption
        order = screened + positives
        random.shuffle(order)
        caption, spans = build_class_prompt([all_names[key] for key in order], separator=self.separation_tokens,
                                            clean=True)
        label = {key: i for i, key in enumerate(order)}  # the new label of a class is its place in the caption
        tokens_positive = {label[key]: [list(span) for span in spans[label[key]]] for key in positives}
        results['gt_bboxes_labels'] = np.array([label[key] for key in keys], dtype=np.int64)
        results['text'] = caption
        results['tokens_positive'] = tokens_positive
        self._check_spans(caption, tokens_positive)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(tokenizer_name={self.tokenizer_name!r}, '
                f'num_sample_negative={self.num_sample_negative}, max_tokens={self.max_tokens}, '
                f'control_prob={self.control_prob}, separation_tokens={self.separation_tokens!r}, '
                f'label_map_file={self.label_map_file!r}, background_name={self.background_name!r}, '
                f'check_spans={self.check_spans})')
