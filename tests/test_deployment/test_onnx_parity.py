"""ONNX Runtime's detections equal FIBERInferencer's: class lists, phrases, expressions, several image sizes
through one graph, a fixed vocabulary, and a prompt per image in one batch."""
import os.path as osp

import numpy as np
import onnx
import pytest
from PIL import Image

from fiber_mmdet.runtime import ONNXFIBER

from ..conftest import val_images
from .conftest import FIXED_TEXTS, match_detections

PROMPTS = [
    dict(texts='circle . square . triangle', custom_entities=True),
    dict(texts='a red circle left of a blue square', tokens_positive=['a red circle', 'a blue square']),
    dict(texts='the small red triangle', tokens_positive=-1),
]


@pytest.fixture(scope='module')
def images(toy_root, tmp_path_factory):
    """Two toy images and two resized copies (landscape 300x170, portrait 130x410): four padded sizes."""
    paths = val_images(toy_root)[:2]
    out = tmp_path_factory.mktemp('sizes')
    with Image.open(paths[0]) as im:
        im.convert('RGB').resize((300, 170)).save(out / 'wide.png')
        im.convert('RGB').resize((130, 410)).save(out / 'tall.png')
    return paths + [str(out / 'wide.png'), str(out / 'tall.png')]


@pytest.mark.parametrize('prompt', PROMPTS, ids=['classes', 'phrases', 'expression'])
def test_free_text_graph_equals_pytorch(onnx_exports, toy_inferencer, images, prompt):
    model = ONNXFIBER(onnx_exports['free'])
    shapes = set()
    for image in images:
        expected = toy_inferencer(image, **prompt)['predictions'][0]
        actual = model(image, **prompt)[0]
        assert len(expected['scores']) > 10  # the untrained head scores every anchor ~0.5: many boxes to match
        match_detections(expected, actual)
        with Image.open(image) as im:
            shapes.add(im.size)
    assert len(shapes) == 4  # one graph, several input sizes


def test_fixed_vocabulary_graph_equals_pytorch(onnx_exports, toy_inferencer, images, tmp_path):
    graph = onnx.load(osp.join(onnx_exports['fixed'], 'fiber.onnx'), load_external_data=False)
    assert [i.name for i in graph.graph.input] == ['image', 'img_hw']
    model = ONNXFIBER(onnx_exports['fixed'])
    exact = tmp_path / 'exact.png'
    Image.open(images[0]).convert('RGB').resize((250, 144)).save(exact)
    # both resize to 144x254 / 144x250 and pad to the graph's 160x256, in PyTorch too
    for image in (images[2], str(exact)):
        expected = toy_inferencer(image, texts=FIXED_TEXTS, custom_entities=True)['predictions'][0]
        match_detections(expected, model(image)[0])


def test_prompt_per_image_batched_equals_one_call_each(onnx_exports, images):
    model = ONNXFIBER(onnx_exports['free'])
    texts = [p['texts'] for p in PROMPTS] + ['circle . cross']
    positives = [p.get('tokens_positive') for p in PROMPTS] + [None]
    flags = [True, False, False, True]
    batched = model(images, texts=texts, tokens_positive=positives, custom_entities=flags, batch_size=4)
    for image, text, positive, flag, result in zip(images, texts, positives, flags, batched):
        alone = model(image, texts=text, tokens_positive=positive, custom_entities=flag)[0]
        match_detections(alone, result, box_tol=1e-3, score_tol=1e-5)
    assert batched[3]['label_names'] and set(batched[3]['label_names']) <= {'circle', 'cross'}
    assert set(batched[2]['label_names']) == {'the small red triangle'}


def test_runtime_nms_equals_mmcv():
    import torch
    from mmcv.ops import batched_nms as mmcv_batched_nms

    from fiber_mmdet.runtime.postprocess import batched_nms
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (400, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (400, 2)).astype(np.float32)], 1)
    scores = rng.uniform(0, 1, 400).astype(np.float32)
    labels = rng.integers(0, 5, 400)
    for offset in (0, 1):
        _, keep = mmcv_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels),
                                   dict(type='nms', iou_threshold=0.6, offset=offset))
        ours = batched_nms(boxes, scores, labels, 0.6, offset)
        assert 30 < len(ours) < 400
        assert ours.tolist() == keep.tolist()


def test_long_class_list_is_split_as_in_pytorch(onnx_exports, toy_inferencer, images):
    """A class list over the toy model's 64 tokens runs as several prompts in both, with the same labels."""
    names = [f'{colour} {shape}' for colour in ('red', 'green', 'blue', 'yellow', 'purple', 'orange')
             for shape in ('circle', 'square', 'triangle', 'diamond', 'cross')]
    model = ONNXFIBER(onnx_exports['free'])
    assert len(model.planner.plan(names)) == 2  # 30 names: two prompts of at most 64 tokens
    expected = toy_inferencer(images[0], texts=[tuple(names)])['predictions'][0]
    actual = model(images[0], texts=[tuple(names)])[0]
    assert len(set(expected['labels'])) > 5 and max(expected['labels']) >= 20  # later prompts' labels too
    match_detections(expected, actual)


def test_planned_prompts_are_kept_bounded(onnx_exports, images):
    """A text used call after call is planned once; the store of plans stays bounded under new texts."""
    model = ONNXFIBER(onnx_exports['free'])
    names = tuple(f'shape {i}' for i in range(40))
    first = model(images[0], texts=[names])[0]
    plan = model.plans.get(next(iter(model.plans)), lambda: None)
    assert model(images[0], texts=[names])[0] == first and len(model.plans) == 1
    assert model.plans.get(next(iter(model.plans)), lambda: None) is plan  # the same plan object, not re-planned
    for i in range(70):
        model._per_image_prompts(1, f'circle {i} . square', None, True)
    assert len(model.plans) == 64
