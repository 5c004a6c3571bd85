"""Bad evaluation samples (a prompt that cannot be built, an unreadable image) are named; strict stops, tolerant
counts and skips them while the rest is evaluated. The image-level cases run through tools/test.py in
test_tools_faults.py; here each bad prompt form goes through the toy FIBER in a Runner test loop."""
import copy

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmdet.registry import METRICS
from fiber_mmdet.datasets.transforms import CheckedLoadImageFromFile, ImageLoadError
from fiber_mmdet.engine import BadSampleError
from fiber_mmdet.engine.runner.contain_bad_samples_loop import ContainedPipeline
from fiber_mmdet.utils import PromptError
from .conftest import corrupt_copy

# (text, tokens_positive, custom_entities, what FIBER's prompt builder says): one fine sample, then each bad form
PROMPTS = [
    ('circle . square', None, True, None),
    ('', None, True, 'names no class'),
    ('. . .', None, True, 'names no class'),
    ('a red circle', ['a blue square'], False, "'a blue square' is not in the caption"),
    ('a red circle', [[[9, 2]]], False, r'\[9, 2\] is reversed'),
    ('a red circle', [[[2, 40]]], False, 'outside the caption'),
    (' '.join(['the small red circle'] * 30), -1, False, 'reads at most 64'),
]


class PromptDataset(Dataset):
    """The first toy validation image through the toy test pipeline, once per prompt of :data:`PROMPTS`."""

    def __init__(self, toy_cfg, toy_root: str) -> None:
        from mmengine.dataset import Compose
        import os
        import os.path as osp
        self.pipeline = Compose(copy.deepcopy(toy_cfg.test_dataloader.dataset.pipeline))
        folder = osp.join(toy_root, 'images', 'val')
        self.image = osp.join(folder, sorted(os.listdir(folder))[0])
        self.metainfo = dict(classes=('circle', 'square'))

    def __len__(self) -> int:
        return len(PROMPTS)

    def __getitem__(self, i):
        text, tokens_positive, custom_entities, _ = PROMPTS[i]
        return self.pipeline(dict(img_path=self.image, img_id=i, text=text, tokens_positive=tokens_positive,
                                  custom_entities=custom_entities))


@METRICS.register_module(force=True)
class CountBoxesMetric(BaseMetric):
    """Number of samples and of predicted boxes it saw."""

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(len(s['pred_instances']['bboxes']) for s in data_samples)  # the Evaluator gives dicts

    def compute_metrics(self, results) -> dict:
        return dict(samples=len(results), with_boxes=sum(n > 0 for n in results))


def _runner(tmp_path, toy_cfg, toy_root, toy_checkpoint, on_bad_sample):
    """The real toy FIBER in a Runner test loop over :class:`PromptDataset`; every candidate box is kept (the
    untrained model scores below the config's threshold)."""
    model = copy.deepcopy(toy_cfg.model)
    model.test_cfg.score_thr = 0.0
    return Runner(
        model=model, load_from=toy_checkpoint, work_dir=str(tmp_path),
        experiment_name=tmp_path.name + on_bad_sample, default_scope='mmdet',
        test_dataloader=dict(dataset=PromptDataset(toy_cfg, toy_root), sampler=dict(type='DefaultSampler',
                             shuffle=False), batch_size=1, num_workers=0, collate_fn=dict(type='pseudo_collate')),
        test_cfg=dict(type='ContainBadSamplesTestLoop', on_bad_sample=on_bad_sample),
        test_evaluator=dict(type='CountBoxesMetric'))


def test_each_bad_prompt_form_is_a_prompt_error(toy_cfg, toy_root, toy_checkpoint):
    """FIBER's own prompt builder on each form (the errors the loops contain)."""
    from mmdet.registry import MODELS
    model = MODELS.build(copy.deepcopy(toy_cfg.model)).eval()
    dataset = PromptDataset(toy_cfg, toy_root)
    for i, (_, _, _, message) in enumerate(PROMPTS):
        sample = dataset[i]['data_samples']
        if message is None:
            assert len(model.test_prompts(sample)) == 1
            continue
        with pytest.raises(PromptError, match=message) as error:
            model.test_prompts(sample)
        assert str(error.value).startswith(dataset.image)  # the sample is named


def test_prompt_error_strict_names_the_sample(tmp_path, toy_cfg, toy_root, toy_checkpoint):
    with pytest.raises(BadSampleError, match=r"\(img_id 1, text ''\): PromptError: .*names no class.*"
                       r'test_cfg.on_bad_sample="skip"'):
        _runner(tmp_path, toy_cfg, toy_root, toy_checkpoint, 'raise').test()


def test_prompt_error_tolerant_counts_and_evaluates_the_rest(tmp_path, toy_cfg, toy_root, toy_checkpoint):
    metrics = _runner(tmp_path, toy_cfg, toy_root, toy_checkpoint, 'skip').test()
    # every sample reaches the metric (order kept); the six bad ones with no detection, the good one with boxes
    assert metrics == {'samples': 7, 'with_boxes': 1, 'bad_samples/skipped': 6.0}


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
