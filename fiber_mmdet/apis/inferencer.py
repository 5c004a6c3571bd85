"""MMDetection's ``DetInferencer`` with what FIBER users need on top: phrase names in the results, ``'$: coco'``
class lists, image errors that name the file."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mmengine
import numpy as np
from mmcv.ops import nms
from mmengine.dataset import Compose

from mmdet.apis import DetInferencer
from mmdet.evaluation import get_classes
from mmdet.structures import DetDataSample
from ..datasets.transforms.loading import (ImageLoadError, image_load_error, pipeline_orientation,
                                          with_user_image_loader)
from ..utils import PromptError
from ..utils.grounding_prompts import check_expression, resolve_phrases
from ..utils.image_io import load_user_image
from ..utils.image_prompts import TextsType, TokensPositiveType, prompts_per_image
from .image_inputs import inputs_to_list


def dataset_class_names(texts: str) -> Optional[Tuple[str, ...]]:
    """``'$: coco'`` / ``'$: lvis'`` (MMDetection's demo syntax) -> that dataset's class names, else None."""
    if not isinstance(texts, str) or not texts.startswith('$:'):
        return None
    name = texts[2:].strip()
    try:
        return tuple(get_classes(name))
    except ValueError as e:
        raise PromptError(f'{texts!r}: unknown dataset {name!r} (mmdet knows e.g. coco, lvis, voc, objects365v2)') \
            from e


def caption_spans(text, tokens_positive) -> Optional[List[List[List[int]]]]:
    """Per label, the ``[beg, end)`` character spans of a caption's phrases (``tokens_positive`` as phrases or
    spans) or of an expression (-1: the whole text); None for class names."""
    if not isinstance(text, str) or tokens_positive is None:
        return None
    if isinstance(tokens_positive, int):
        spans = check_expression(text)[1]
    else:
        if isinstance(tokens_positive, dict):
            tokens_positive = [tokens_positive[k] for k in sorted(tokens_positive)]
        spans = resolve_phrases(text, tokens_positive)
    return [[[beg, end] for beg, end in entity] for entity in spans]


class _PipelineNamingTheInput:
    """The test pipeline; any failure is re-raised as an ``ImageLoadError`` naming the input file."""

    def __init__(self, pipeline: Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, inputs):
        try:
            return self.pipeline(inputs)
        except ImageLoadError:
            raise
        except Exception as e:
            path = inputs.get('img_path', None) if isinstance(inputs, dict) else inputs
            if isinstance(path, str):
                raise image_load_error(path, e) from e
            raise ImageLoadError(f'an array input cannot be prepared: {type(e).__name__}: {e}') from e


class FIBERInferencer(DetInferencer):
    """Run FIBER on your own images from text.

    Same arguments and call as MMDetection's ``DetInferencer`` (which works with FIBER too); in addition:

    * each prediction dict (and each ``preds/*.json`` under ``out_dir``) has ``label_names``: the class or phrase
      each box grounds, next to ``bboxes`` (xyxy, input-image pixels), ``scores`` and ``labels`` (0-based index
      into the class / phrase list);
    * ``texts='$: coco'`` (or any dataset mmdet knows, e.g. ``'$: lvis'``) runs that dataset's class names;
      long class lists are split into prompts that fit, never truncated;
    * ``tokens_positive`` may list the phrases themselves (``['a man', 'a horse']``) instead of their spans;
    * an image that cannot be read raises :class:`ImageLoadError` naming the file; a prompt that cannot be built
      raises :class:`~fiber_mmdet.utils.PromptError`.

    The text forms (``texts`` / ``custom_entities`` / ``tokens_positive``):

    * classes: ``texts='cat . remote control'``, ``custom_entities=True`` (or a tuple of names in a list);
    * phrase grounding: ``texts='a man riding a horse'``, ``tokens_positive=['a man', 'a horse']`` or
      ``[[[0, 5]], [[14, 21]]]``;
    * referring expression: ``texts='the man on the left'``, ``tokens_positive=-1`` (label 0; the candidates are
      ranked, the first is the answer and the only one drawn);
    * a prompt per image: ``texts`` a list with one entry per image (a string, or a tuple of class names),
      ``tokens_positive`` None, -1 or one entry per image (None, -1 or that image's phrases), ``custom_entities``
      one flag or one per image; images of a batch (``batch_size``) may each have their own prompt and size and
      get exactly the detections they get alone (:func:`~fiber_mmdet.utils.image_prompts.prompts_per_image`).

    Names, captions and phrases may be in any script (``'café'``, ``'猫 . 狗'``, ``'🐱 . 🐶'``): ``label_names``
    are the text as typed, and spans are character offsets into it.

    Example:
        >>> inferencer = FIBERInferencer('configs/toy/fiber_toy.py', 'work_dirs/quickstart/iter_1900.pth',
        ...                              device='cpu')
        >>> out = inferencer('img.png', texts='circle . square', custom_entities=True)
        >>> out['predictions'][0]['label_names'][:2]
        ['circle', 'square']
        >>> out = inferencer(['a.png', 'b.png', 'c.png'],
        ...                  texts=[('circle', 'square'), 'a red circle left of a square', 'the blue square'],
        ...                  tokens_positive=[None, ['a red circle', 'a square'], -1], batch_size=3)
    """

    def _init_pipeline(self, cfg) -> _PipelineNamingTheInput:
        """The config's test pipeline with files decoded by the shared user-image decoder (EXIF orientation,
        16-bit, transparency, pixel limit), any failure naming the file."""
        return _PipelineNamingTheInput(with_user_image_loader(super()._init_pipeline(cfg)))

    def __call__(self, inputs, texts: TextsType = None, custom_entities: Union[bool, Sequence[bool]] = False,
                 tokens_positive: TokensPositiveType = None, **kwargs) -> dict:
        """See the class docstring and ``DetInferencer.__call__``."""
        images = self._inputs_to_list(inputs)
        prompts = prompts_per_image(len(images), texts, custom_entities, tokens_positive,
                                    expand=dataset_class_names)
        items = []
        for image, prompt in zip(images, prompts):
            item = dict(image) if isinstance(image, dict) else {'img_path' if isinstance(image, str) else 'img': image}
            item.update(text=prompt.text, custom_entities=prompt.custom_entities,
                        tokens_positive=prompt.tokens_positive)
            items.append(item)
        # mmdet's DetInferencer gives every image the same tokens_positive and custom_entities: the per-image
        # prompts go in as its dict inputs instead, which it passes to the pipeline as they are
        return super().__call__(items, **kwargs)

    visualize_kwargs = DetInferencer.visualize_kwargs | {'one_label_per_box'}

    def visualize(self, inputs, preds: List[DetDataSample], return_vis: bool = False, show: bool = False,
                  wait_time: float = 0, draw_pred: bool = True, pred_score_thr: float = 0.3,
                  no_save_vis: bool = False, img_out_dir: str = '', one_label_per_box: bool = False,
                  **kwargs) -> Optional[List[np.ndarray]]:
        """mmdet's drawing (same arguments), except that a file is decoded as the model saw it (the pipeline's
        orientation, 16-bit, transparency: :func:`~fiber_mmdet.utils.image_io.load_user_image`) and grounding shows
        its answers: a referring expression its top box, a caption with phrases each phrase's top box (the
        predictions keep every candidate, ranked, as ``tools/test.py`` gives them). ``one_label_per_box``: of boxes
        that overlap by IoU >= 0.7 only the best-scoring one is drawn, so that one object shows one label (the
        classes' NMS is per class: a box may carry several names). Returns the RGB pictures (H, W, 3), or None
        when nothing is shown, saved or returned."""
        if no_save_vis:
            img_out_dir = ''
        if not show and not img_out_dir and not return_vis:
            return None
        if self.visualizer is None:
            raise ValueError('drawing needs a "visualizer" in the config')
        pictures = []
        for single_input, pred in zip(inputs, preds):
            pred = drawn_answers(pred, one_label_per_box)
            if isinstance(single_input, str):
                # oriented as the pipeline oriented the model's input (the config's color_type), so boxes fit
                image = load_user_image(single_input, channel_order='rgb',
                                        orientation=pipeline_orientation(self.pipeline.pipeline))
                name = osp.basename(single_input)
            elif isinstance(single_input, np.ndarray):
                image, name = single_input.copy(), f'{self.num_visualized_imgs:08d}.jpg'
            else:
                raise ValueError(f'cannot draw an input of type {type(single_input).__name__}')
            self.visualizer.add_datasample(
                name, image, pred, show=show, wait_time=wait_time, draw_gt=False, draw_pred=draw_pred,
                pred_score_thr=pred_score_thr, out_file=osp.join(img_out_dir, 'vis', name) if img_out_dir else None)
            pictures.append(self.visualizer.get_image())
            self.num_visualized_imgs += 1
        return pictures

    def _inputs_to_list(self, inputs) -> list:
        """A folder -> its images (extensions in any case, sorted by name; what is left out is logged), a list
        as it is, anything else -> ``[inputs]`` (:func:`.image_inputs.inputs_to_list`)."""
        return inputs_to_list(inputs)

    def pred2dict(self, data_sample: DetDataSample, pred_out_dir: str = '') -> Dict:
        """mmdet's prediction dict plus ``label_names``, and for a caption (phrases or an expression) the ``text``
        and, per label, its ``tokens_positive`` character spans ``[[beg, end), ...]`` in that text as written;
        saved to ``pred_out_dir/preds/<image>.json`` (UTF-8, names in any script as they are)."""
        result = super().pred2dict(data_sample, '')
        if 'pred_instances' in data_sample:
            result['label_names'] = list(data_sample.pred_instances.get('label_names', []))
        spans = caption_spans(data_sample.get('text', None), data_sample.get('tokens_positive', None))
        if spans is not None:
            result['text'] = data_sample.text
            result['tokens_positive'] = spans
        if pred_out_dir:
            if 'img_path' in data_sample:
                stem = osp.splitext(osp.basename(data_sample.img_path))[0]
            else:
                stem = str(self.num_predicted_imgs)
                self.num_predicted_imgs += 1
            mmengine.dump(result, osp.join(pred_out_dir, 'preds', stem + '.json'), ensure_ascii=False)
        return result


def best_detection(prediction: dict) -> Optional[Tuple[float, str]]:
    """(score, name) of the highest-scoring box of one prediction dict, None when it has none."""
    scores: List[float] = prediction.get('scores', [])
    if not scores:
        return None
    i = max(range(len(scores)), key=scores.__getitem__)
    names = prediction.get('label_names') or [str(label) for label in prediction.get('labels', [])]
    return scores[i], names[i]


def drawn_answers(pred: DetDataSample, one_label_per_box: bool = False, same_box_iou: float = 0.7
                  ) -> DetDataSample:
    """What a picture shows of ``pred``: a referring expression's top box, each phrase's top box for a caption
    with phrases, every detection for a class list; with ``one_label_per_box`` only the best of boxes
    overlapping by IoU >= ``same_box_iou``. Returns ``pred`` itself or a filtered copy."""
    if 'pred_instances' not in pred or not len(pred.pred_instances):
        return pred
    instances = pred.pred_instances
    tokens_positive = pred.get('tokens_positive', None)
    order = instances.scores.argsort(descending=True)
    if tokens_positive == -1:
        keep = order[:1]
    elif tokens_positive is not None:  # phrases: the first (best) box of each label in score order
        labels = instances.labels[order].tolist()
        keep = order[[labels.index(label) for label in sorted(set(labels))]]
    else:
        keep = order
    if one_label_per_box and len(keep) > 1:
        _, kept = nms(instances.bboxes[keep].float(), instances.scores[keep].float(), same_box_iou)
        keep = keep[kept]
    if len(keep) == len(instances):
        return pred
    pred = pred.clone()
    pred.pred_instances = instances[keep]
    return pred
