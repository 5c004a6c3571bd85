"""Batches in FIBERInferencer and in the test data loader: a prompt per image, and images of different sizes,
each give exactly what the image gets alone (toy config, untrained checkpoint: every image has 100 boxes, so
labels, names, boxes and scores are all compared)."""
import copy
from collections import Counter

import numpy as np
import pytest
import torch

from fiber_mmdet.apis import FIBERInferencer
from fiber_mmdet.utils import PromptError
from ..conftest import TOY_CONFIG, val_images

BOX_TOL = 1e-3  # pixels
SCORE_TOL = 1e-5

#: (texts, tokens_positive, custom_entities) of one image for each prompt kind
KINDS = {
    'class list': (('circle', 'square', 'cross'), None, False),
    'class string': ('circle . triangle .', None, True),
    'phrases': ('a red circle left of a blue square', ['a red circle', 'a blue square'], False),
    'expression': ('the blue square', -1, False),
}


def shared_prompt(kind: str, num_images: int) -> dict:
    """The inferencer arguments that give every image the prompt of ``kind``."""
    text, positive, custom = KINDS[kind]
    if isinstance(text, str):
        return dict(texts=text, tokens_positive=positive, custom_entities=custom)
    return dict(texts=[text] * num_images, custom_entities=custom)


@pytest.fixture
def inferencer(toy_dir, toy_checkpoint):
    return FIBERInferencer(model=TOY_CONFIG, weights=toy_checkpoint, device='cpu', show_progress=False)


def assert_same_predictions(got: dict, expected: dict, where: str) -> None:
    assert got['labels'] == expected['labels'], where
    assert got['label_names'] == expected['label_names'], where
    assert len(got['labels']) > 0, where
    np.testing.assert_allclose(got['bboxes'], expected['bboxes'], atol=BOX_TOL, rtol=0, err_msg=where)
    np.testing.assert_allclose(got['scores'], expected['scores'], atol=SCORE_TOL, rtol=0, err_msg=where)


def padded_sizes(images) -> Counter:
    from PIL import Image
    sizes = []
    for path in images:
        with Image.open(path) as im:
            width, height = im.size
        # the toy pipeline: short side 144, long side at most 256, then padding to 32
        scale = min(144 / min(width, height), 256 / max(width, height))
        sizes.append(tuple(-(-round(s * scale) // 32) * 32 for s in (height, width)))
    return Counter(sizes)


@pytest.mark.parametrize('reuse', [True, False], ids=['reuse_text_free', 'whole_model'])
def test_a_prompt_per_image_in_one_batch_equals_one_call_per_image(inferencer, toy_dir, reuse):
    inferencer.model.test_cfg['reuse_text_free_features'] = reuse
    images = val_images(toy_dir)
    kinds = list(KINDS.values())
    texts = [k[0] for k in kinds]
    tokens_positive = [k[1] for k in kinds]
    custom_entities = [k[2] for k in kinds]
    batched = inferencer(images, texts=texts, tokens_positive=tokens_positive, custom_entities=custom_entities,
                         batch_size=len(images))['predictions']
    for name, image, got in zip(KINDS, images, batched):
        alone = inferencer(image, **shared_prompt(name, 1))['predictions'][0]
        assert_same_predictions(got, alone, f'{name}: {image}')
    assert set(batched[0]['label_names']) <= {'circle', 'square', 'cross'}
    assert set(batched[1]['label_names']) <= {'circle', 'triangle'}
    assert set(batched[2]['label_names']) <= {'a red circle', 'a blue square'}
    assert set(batched[3]['label_names']) == {'the blue square'}
    assert batched[2]['tokens_positive'] == [[[0, 12]], [[21, 34]]]  # spans into each image's own caption
    assert batched[3]['tokens_positive'] == [[[0, 15]]]


@pytest.mark.parametrize('kind', ['class list', 'phrases', 'expression'])
def test_a_batch_of_images_of_different_sizes_equals_each_image_alone(inferencer, toy_dir, kind):
    images = val_images(toy_dir)
    assert len(padded_sizes(images)) >= 3  # the batch really mixes padded sizes
    kwargs = shared_prompt(kind, len(images))
    alone = [inferencer(image, **shared_prompt(kind, 1))['predictions'][0] for image in images]
    batched = inferencer(images, batch_size=len(images), **kwargs)['predictions']
    for image, got, expected in zip(images, batched, alone):
        assert_same_predictions(got, expected, f'{kind}: {image}')
    # padding every image to the batch's largest (the pre-grouping behaviour) changes the detections
    inferencer.model.test_cfg['group_by_padded_shape'] = False
    padded = inferencer(images, batch_size=len(images), **kwargs)['predictions']
    assert any(p['bboxes'] != e['bboxes'] for p, e in zip(padded, alone))


def test_the_test_data_loader_in_batches_of_four_equals_batches_of_one(toy_dir, toy_checkpoint):
    """What tools/test.py runs (the config's test data loader, ``model.test_step``) with
    ``test_dataloader.batch_size=4``: detection and grounding samples of mixed sizes in one batch."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmdet.apis import init_detector
    cfg = Config.fromfile(TOY_CONFIG)
    model = init_detector(cfg, toy_checkpoint, device='cpu')
    results = {}
    for batch_size in (1, 4):
        loader_cfg = copy.deepcopy(cfg.test_dataloader)
        loader_cfg.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
        outputs = []
        with torch.no_grad():
            for data in Runner.build_dataloader(loader_cfg):
                outputs.extend(model.test_step(data))
        results[batch_size] = outputs
    assert len(results[4]) == len(results[1]) >= 10
    kinds = Counter(type(s.text).__name__ for s in results[4])
    assert kinds['str'] > 0 and kinds['tuple'] + kinds['list'] > 0
    for got, expected in zip(results[4], results[1]):
        where = f'{got.img_path} {got.text!r}'
        assert got.img_path == expected.img_path and got.text == expected.text
        assert got.pred_instances.labels.tolist() == expected.pred_instances.labels.tolist(), where
        torch.testing.assert_close(got.pred_instances.bboxes, expected.pred_instances.bboxes, atol=BOX_TOL, rtol=0)
        torch.testing.assert_close(got.pred_instances.scores, expected.pred_instances.scores, atol=SCORE_TOL,
                                   rtol=0)


def test_per_image_arguments_that_do_not_match_the_images_are_errors(inferencer, toy_dir):
    images = val_images(toy_dir)[:3]
    for kwargs, message in [
        (dict(texts=['circle', 'square'], custom_entities=True), 'texts has 2 entries for 3 image'),
        (dict(texts=['a red circle'] * 3, tokens_positive=['a red circle', 'circle']), 'tokens_positive has 2'),
        (dict(texts=['a red circle'] * 3, tokens_positive=['a red circle'] * 3), r'tokens_positive\[0\]'),
        (dict(texts=[('circle',), 'a red circle', 'a red circle'], tokens_positive=[['circle'], None, -1]),
         r'texts\[0\] is a class list'),
        (dict(texts=['circle'] * 3, custom_entities=[True, False]), 'custom_entities has 2'),
    ]:
        with pytest.raises(PromptError, match=message):
            inferencer(images, **kwargs)
