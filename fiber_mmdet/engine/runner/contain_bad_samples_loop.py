"""Evaluation loops where one bad sample is named, and either stops the run (strict) or is counted and skipped.

A bad sample is an image that cannot be read (:class:`ImageLoadError`) or a prompt that cannot be built
(:class:`PromptError`: empty or separators-only text, a phrase outside its caption, a reversed or out-of-range
span, a sentence over the token budget).

* ``on_bad_sample='raise'`` (default; the benchmark configs keep it, so a published number is never computed on
  a partial set): the run stops with an error naming the sample (path, id, text) and the setting to change.
* ``on_bad_sample='skip'``: the sample gets an empty prediction, so every dataset of a concatenated test set
  keeps its order and size, and the rest of the split is evaluated; each skip is logged, and the metrics gain
  ``bad_samples/skipped`` (all ranks) and the list of skipped samples in the log. A skipped sample counts as one
  with no detection, so a tolerant metric is a lower bound of the full-set value. Under several ranks a bad
  sample that the distributed sampler repeats to pad the last round is counted once.
"""
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.dataset import Compose
from mmengine.dist import all_gather_object
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmengine.runner import TestLoop, ValLoop
from mmengine.runner.amp import autocast
from mmengine.runner.loops import _update_losses
from mmengine.structures import InstanceData

from mmdet.registry import LOOPS
from ...datasets.transforms.loading import ImageLoadError, image_load_error, with_user_image_loader
from ..dist import RankSample, rank_sample_indices
from ...utils.prompts import PromptError

ON_BAD_SAMPLE = ('raise', 'skip')
PLACEHOLDER_SIZE = 32  # side of the black image that stands in for an unreadable one (never predicted on)


class BadSampleError(RuntimeError):
    """An evaluation sample that cannot be used, in strict mode (``on_bad_sample='raise'``)."""


def describe_sample(sample) -> str:
    """``img_path`` (``img_id``) and the start of the sample's text, for messages."""
    text = sample.get('text', None)
    text = repr(text if not isinstance(text, str) or len(text) < 80 else text[:77] + '...')
    return f'{sample.get("img_path", "?")} (img_id {sample.get("img_id", "?")}, text {text})'


class ContainedPipeline:
    """A dataset's ``Compose`` run transform by transform: an image that cannot be loaded raises an
    :class:`ImageLoadError` naming it or, with ``skip=True``, becomes a black placeholder and the packed sample
    carries the reason as ``bad_sample`` in its metainfo (the loop then does not predict on it)."""

    def __init__(self, pipeline: Compose, skip: bool) -> None:
        self.pipeline = pipeline
        self.skip = skip

    def __call__(self, results: dict) -> Optional[dict]:
        reason = None
        for transform in self.pipeline.transforms:
            try:
                results = transform(results)
            except Exception as error:
                if not isinstance(error, ImageLoadError):
                    if not isinstance(transform, LoadImageFromFile):
                        raise
                    error = image_load_error(results['img_path'], error)
                if not self.skip:
                    raise error
                reason = str(error)
                img = np.zeros((PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3), np.uint8)
                results.update(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
            if results is None:
                return None
        if reason is not None:
            results['data_samples'].set_metainfo(dict(bad_sample=reason))
        return results


def _leaf_datasets(dataset) -> list:
    inner = getattr(dataset, 'datasets', None) or ([dataset.dataset] if hasattr(dataset, 'dataset') else None)
    return [d for child in inner for d in _leaf_datasets(child)] if inner else [dataset]


def _empty_prediction(sample) -> None:
    sample.pred_instances = InstanceData(
        bboxes=torch.zeros((0, 4)), scores=torch.zeros((0, )), labels=torch.zeros((0, ), dtype=torch.long),
        label_names=[])


class BadSampleReportingEvaluator(Evaluator):
    """Runs a loop's evaluator and adds ``bad_samples/skipped`` (summed over ranks) to its metrics; the skipped
    samples are listed in the log."""

    def __init__(self, evaluator: Evaluator, skipped: List[str]) -> None:
        super().__init__([])
        self.evaluator = evaluator
        self.skipped = skipped

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self.evaluator.dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        if hasattr(self, 'evaluator'):
            self.evaluator.dataset_meta = dataset_meta

    def process(self, data_samples, data_batch=None) -> None:
        self.evaluator.process(data_samples, data_batch)

    def evaluate(self, size: int) -> dict:
        metrics = self.evaluator.evaluate(size)
        skipped = [s for rank in all_gather_object(list(self.skipped)) for s in rank]
        if skipped:
            MMLogger.get_current_instance().warning(
                f'{len(skipped)} of {size} samples were skipped and scored as having no detection, so these '
                'metrics are a lower bound of the full-set values:\n  ' + '\n  '.join(skipped))
        self.skipped.clear()
        # a float: MMEngine's JSON log drops numpy integers (it keeps numpy floats, a float subclass)
        return dict(metrics, **{'bad_samples/skipped': float(len(skipped))})


class ContainBadSamplesMixin:
    """The containment shared by the test and validation loops (see the module docstring); ``stage`` is
    ``'test'`` or ``'val'`` (the model step, the hooks and the loss buffer MMEngine's loop uses)."""
    stage = 'test'

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False, on_bad_sample: str = 'raise') -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self._setup_containment(on_bad_sample)

    def run(self) -> dict:
        """MMEngine's ``run``, knowing which of this rank's samples are the sampler's padded repeats."""
        self._samples: Optional[List[RankSample]] = rank_sample_indices(self.dataloader)
        self._position = 0
        return super().run()

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Dict) -> None:
        """MMEngine's ``run_iter`` around :meth:`_contained_step`."""
        stage = self.stage
        self.runner.call_hook(f'before_{stage}_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            outputs = self._contained_step(getattr(self.runner.model, f'{stage}_step'), data_batch)
        outputs, losses = _update_losses(outputs, getattr(self, f'{stage}_loss'))
        setattr(self, f'{stage}_loss', losses)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(f'after_{stage}_iter', batch_idx=idx, data_batch=data_batch, outputs=outputs)

    def _setup_containment(self, on_bad_sample: str) -> None:
        if on_bad_sample not in ON_BAD_SAMPLE:
            raise ValueError(f'on_bad_sample must be one of {ON_BAD_SAMPLE}, got {on_bad_sample!r}')
        self.on_bad_sample = on_bad_sample
        self.skipped: List[str] = []
        for dataset in _leaf_datasets(self.dataloader.dataset):
            pipeline = getattr(dataset, 'pipeline', None)
            if isinstance(pipeline, Compose):
                # the decoder of training and inference (EXIF, 16-bit, transparency, pixel limit), not mmcv's own
                dataset.pipeline = ContainedPipeline(with_user_image_loader(pipeline), skip=on_bad_sample == 'skip')
        self.evaluator = BadSampleReportingEvaluator(self.evaluator, self.skipped)

    def _skip(self, sample, reason: str, repeat: bool) -> None:
        entry = f'{describe_sample(sample)}: {reason}'
        if repeat:  # the other copy, on the rank the sampler gave it first, is the one counted
            MMLogger.get_current_instance().info(f'bad sample skipped again (a padded repeat of the distributed '
                                                 f'sampler, counted once): {entry}')
        else:
            MMLogger.get_current_instance().warning(f'bad sample skipped (on_bad_sample="skip"): {entry}')
            self.skipped.append(entry)
        _empty_prediction(sample)

    def _is_repeat(self, position: int) -> bool:
        samples = getattr(self, '_samples', None)
        return samples is not None and position < len(samples) and samples[position].padding

    def _contained_step(self, step: Callable[[dict], list], data_batch: Dict) -> list:
        """``step(data_batch)`` (the model's ``test_step`` / ``val_step``) with bad samples contained: flagged
        ones are not predicted on; a :class:`PromptError` is retried sample by sample to find its sample."""
        samples = data_batch['data_samples']
        first = getattr(self, '_position', 0)  # this rank's position of samples[0] in its sampler's order
        self._position = first + len(samples)
        if not any('bad_sample' in s for s in samples):
            try:
                return step(data_batch)
            except PromptError as error:
                if self.on_bad_sample == 'raise' and len(samples) == 1:
                    raise self._strict_error(samples[0], error) from error
        outputs = []
        for i, sample in enumerate(samples):
            if 'bad_sample' in sample:
                self._skip(sample, sample.bad_sample, self._is_repeat(first + i))
                outputs.append(sample)
                continue
            single = dict(data_batch, inputs=[data_batch['inputs'][i]], data_samples=[sample])
            try:
                outputs.extend(step(single))
            except PromptError as error:
                if self.on_bad_sample == 'raise':
                    raise self._strict_error(sample, error) from error
                self._skip(sample, f'PromptError: {error}', self._is_repeat(first + i))
                outputs.append(sample)
        return outputs

    @staticmethod
    def _strict_error(sample, error: Exception) -> BadSampleError:
        return BadSampleError(
            f'{describe_sample(sample)}: {type(error).__name__}: {error}. The evaluation stops here '
            '(on_bad_sample="raise"); to count and skip such samples and evaluate the rest, set '
            'test_cfg.on_bad_sample="skip" (val_cfg for validation).')


@LOOPS.register_module()
class ContainBadSamplesTestLoop(ContainBadSamplesMixin, TestLoop):
    """MMEngine's ``TestLoop`` (same arguments, plus ``on_bad_sample``) with bad samples named and, with
    ``on_bad_sample='skip'``, counted and skipped (see :mod:`fiber_mmdet.engine.runner.contain_bad_samples_loop`)."""
    stage = 'test'


@LOOPS.register_module()
class ContainBadSamplesValLoop(ContainBadSamplesMixin, ValLoop):
    """MMEngine's ``ValLoop`` (same arguments, plus ``on_bad_sample``) with bad samples named and, with
    ``on_bad_sample='skip'``, counted and skipped (see :mod:`fiber_mmdet.engine.runner.contain_bad_samples_loop`)."""
    stage = 'val'
