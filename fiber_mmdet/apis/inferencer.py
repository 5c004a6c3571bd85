"""MMDetection's ``DetInferencer`` with what FIBER users need on top: phrase names in the results, ``'$: coco'``
class lists, image errors that name the file."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mmengine
from mmengine.dataset import Compose

from mmdet.apis import DetInferencer
from mmdet.evaluation import get_classes
from mmdet.structures import DetDataSample
from ..datasets.transforms.loading import ImageLoadError, image_load_error
from ..utils import PromptError

TextsType = Union[None, str, Sequence[str], Sequence[Sequence[str]]]


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
      ranked, the first is the answer and the only one drawn).

    Example:
        >>> inferencer = FIBERInferencer('configs/toy/fiber_toy.py', 'work_dirs/quickstart/iter_1200.pth',
        ...                              device='cpu')
        >>> out = inferencer('img.png', texts='circle . square', custom_entities=True)
        >>> out['predictions'][0]['label_names'][:2]
        ['circle', 'square']
    """

    def _init_pipeline(self, cfg) -> _PipelineNamingTheInput:
        return _PipelineNamingTheInput(super()._init_pipeline(cfg))

    def __call__(self, inputs, texts: TextsType = None, custom_entities: bool = False,
                 tokens_positive: Union[None, int, list] = None, **kwargs) -> dict:
        """See the class docstring and ``DetInferencer.__call__``."""
        if texts is None:
            raise PromptError('FIBER needs a text prompt: class names (texts="cat . dog", custom_entities=True), '
                              'a caption with the phrases to ground (tokens_positive=[...]) or an expression '
                              '(tokens_positive=-1)')
        inputs = self._inputs_to_list(inputs)
        names = dataset_class_names(texts)
        if names is not None:
            texts = [names] * len(inputs)
        elif not isinstance(texts, str) and len(texts) != len(inputs):
            raise PromptError(f'{len(texts)} texts for {len(inputs)} image(s): give one text per image, or one '
                              "text for all ('cat . dog' with custom_entities=True, or [('cat', 'dog')])")
        return super().__call__(inputs, texts=texts, custom_entities=custom_entities,
                                tokens_positive=tokens_positive, **kwargs)

    def visualize(self, inputs, preds: List[DetDataSample], **kwargs):
        """mmdet's drawing, except that a referring expression shows only its answer, the top box (the
        predictions keep every candidate, ranked, as ``tools/test.py`` gives them)."""
        shown = []
        for pred in preds:
            if pred.get('tokens_positive', None) == -1 and 'pred_instances' in pred:
                pred = pred.clone()
                pred.pred_instances = pred.pred_instances[pred.pred_instances.scores.argsort(descending=True)[:1]]
            shown.append(pred)
        return super().visualize(inputs, shown, **kwargs)

    def pred2dict(self, data_sample: DetDataSample, pred_out_dir: str = '') -> Dict:
        """mmdet's prediction dict plus ``label_names``; saved to ``pred_out_dir/preds/<image>.json``."""
        result = super().pred2dict(data_sample, '')
        if 'pred_instances' in data_sample:
            result['label_names'] = list(data_sample.pred_instances.get('label_names', []))
        if pred_out_dir:
            if 'img_path' in data_sample:
                stem = osp.splitext(osp.basename(data_sample.img_path))[0]
            else:
                stem = str(self.num_predicted_imgs)
                self.num_predicted_imgs += 1
            mmengine.dump(result, osp.join(pred_out_dir, 'preds', stem + '.json'))
        return result


def best_detection(prediction: dict) -> Optional[Tuple[float, str]]:
    """(score, name) of the highest-scoring box of one prediction dict, None when it has none."""
    scores: List[float] = prediction.get('scores', [])
    if not scores:
        return None
    i = max(range(len(scores)), key=scores.__getitem__)
    names = prediction.get('label_names') or [str(label) for label in prediction.get('labels', [])]
    return scores[i], names[i]
