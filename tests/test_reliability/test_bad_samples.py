"""Bad evaluation samples (a prompt that cannot be built, an unreadable image) are named; strict stops, tolerant
counts and skips them while the rest is evaluated. The image-level cases run through tools/test.py in
test_tools_faults.py; here a PromptError is injected per sample into a real Runner test loop."""
import copy

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import InstanceData
from torch.utils.data import Dataset

from mmdet.registry import METRICS
from mmdet.structures import DetDataSample
from fiber_mmdet.datasets.transforms import CheckedLoadImageFromFile, ImageLoadError
from fiber_mmdet.engine import BadSampleError
from fiber_mmdet.engine.runner.contain_bad_samples_loop import ContainedPipeline
from fiber_mmdet.utils import PromptError
from .conftest import corrupt_copy

TEXTS = ['red circle', '', 'blue square', '. . .']  # samples 1 and 3 cannot be prompted


class TextDataset(Dataset):
    """Four samples with a text each (an index in ``img_path`` to name them)."""
    metainfo = dict(classes=('thing', ))

    def __len__(self) -> int:
        return len(TEXTS)

    def __getitem__(self, i):
        sample = DetDataSample(metainfo=dict(img_path=f'img_{i}.png', img_id=i, text=TEXTS[i]))
        return dict(inputs=torch.zeros(3, 4, 4), data_samples=sample)


class PromptModel(BaseModel):
    """Predicts one box per sample; a text without a letter is a PromptError, as FIBER's prompt builder raises."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.batches = []

    def forward(self, inputs, data_samples, mode='predict'):
        self.batches.append(len(data_samples))
        for s in data_samples:
            if not any(c.isalpha() for c in s.text):
                raise PromptError(f'prompt {s.text!r} has no phrase')
            s.pred_instances = InstanceData(bboxes=torch.ones(1, 4), scores=torch.ones(1),
                                            labels=torch.zeros(1, dtype=torch.long))
        return data_samples


@METRICS.register_module(force=True)
class CountBoxesMetric(BaseMetric):
    """Number of samples and of predicted boxes it saw."""

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(len(s['pred_instances']['bboxes']) for s in data_samples)  # the Evaluator gives dicts

    def compute_metrics(self, results) -> dict:
        return dict(samples=len(results), boxes=sum(results))


def _runner(tmp_path, on_bad_sample):
    return Runner(
        model=PromptModel(), work_dir=str(tmp_path), experiment_name=tmp_path.name + on_bad_sample,
        default_scope='mmdet',
        test_dataloader=dict(dataset=TextDataset(), sampler=dict(type='DefaultSampler', shuffle=False),
                             batch_size=2, num_workers=0, collate_fn=dict(type='pseudo_collate')),
        test_cfg=dict(type='ContainBadSamplesTestLoop', on_bad_sample=on_bad_sample),
        test_evaluator=dict(type='CountBoxesMetric'))


def test_prompt_error_strict_names_the_sample(tmp_path):
    with pytest.raises(BadSampleError, match=r"img_1.png \(img_id 1, text ''\): PromptError: prompt '' has no "
                       r'phrase.*test_cfg.on_bad_sample="skip"'):
        _runner(tmp_path, 'raise').test()


def test_prompt_error_tolerant_counts_and_evaluates_the_rest(tmp_path):
    runner = _runner(tmp_path, 'skip')
    metrics = runner.test()
    # every sample reaches the metric (dataset order kept), the two bad ones with no detection
    assert metrics == {'samples': 4, 'boxes': 2, 'bad_samples/skipped': 2.0}


def test_unreadable_image_error_names_the_file(tmp_path):
    empty, truncated = tmp_path / 'empty.png', tmp_path / 'cut.png'
    empty.write_bytes(b'')
    from PIL import Image
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(str(tmp_path / 'ok.png'))
    truncated.write_bytes((tmp_path / 'ok.png').read_bytes()[:40])
    load = CheckedLoadImageFromFile(imdecode_backend='pillow')
    with pytest.raises(ImageLoadError, match=f'{empty}: cannot read this image \\(the file is empty'):
        load(dict(img_path=str(empty)))
    with pytest.raises(ImageLoadError, match=f'{truncated}: cannot read this image \\(40 bytes\\)'):
        load(dict(img_path=str(truncated)))
    assert load(dict(img_path=str(tmp_path / 'ok.png')))['img'].shape == (20, 20, 3)


def _toy_dataset(toy_cfg, root, split):
    """The toy config's training (``train_od``) or COCO validation (``val``) dataset, reading from ``root``."""
    from mmdet.registry import DATASETS
    dataset = copy.deepcopy(toy_cfg.train_dataloader.dataset.datasets[0] if split == 'train_od'
                            else toy_cfg.val_dataloader.dataset.datasets[0])
    if split == 'val':  # the test sets share the concatenation's pipeline
        dataset.pipeline = copy.deepcopy(toy_cfg.val_dataloader.dataset.pipeline)
    dataset.data_root = root + '/'
    return DATASETS.build(dataset)


def test_corrupt_training_image_is_named(toy_root, toy_cfg, tmp_path):
    """The toy training pipeline (CheckedLoadImageFromFile): the error names the file instead of <_io.BytesIO>."""
    root, bad = corrupt_copy(toy_root, tmp_path, 'train_od')
    dataset = _toy_dataset(toy_cfg, root, 'train_od')
    index = [i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'] == bad][0]
    with pytest.raises(ImageLoadError, match=f'{bad}: cannot read this image \\(100 bytes\\)'):
        dataset[index]


def test_corrupt_evaluation_image_strict_raises_and_tolerant_flags_it(toy_root, toy_cfg, tmp_path):
    """The evaluation pipelines as ContainBadSamplesTestLoop wraps them: strict raises naming the file;
    tolerant gives a placeholder sample flagged ``bad_sample`` (never predicted on) and keeps the others."""
    root, bad = corrupt_copy(toy_root, tmp_path, 'val')
    dataset = _toy_dataset(toy_cfg, root, 'val')
    index = [i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'] == bad][0]
    pipeline = dataset.pipeline
    dataset.pipeline = ContainedPipeline(pipeline, skip=False)
    with pytest.raises(ImageLoadError, match=f'{bad}: cannot read this image'):
        dataset[index]
    dataset.pipeline = ContainedPipeline(pipeline, skip=True)
    flagged = dataset[index]['data_samples']
    assert flagged.bad_sample.startswith(f'{bad}: cannot read this image (100 bytes)')
    assert flagged.img_path == bad and flagged.img_id == dataset.get_data_info(index)['img_id']
    assert all('bad_sample' not in dataset[i]['data_samples'] for i in range(len(dataset)) if i != index)
