"""``test_cfg.trim_text_padding``: prompts run on their own tokens instead of ``max_tokens``; padding is masked
everywhere, so the detections equal the padded run's (labels exactly, boxes within 1e-3 px, scores within 1e-5)
for class lists (one and several prompts per image), phrases and expressions, with and without the text-free
reuse, one or several (image, prompt) pairs per forward."""
import copy

import pytest
import torch

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

NAMES = [f'{c} {s}' for c in ('red', 'green', 'blue', 'yellow') for s in ('circle', 'square', 'triangle', 'cross')]
PROMPTS = [
    dict(text=['person', 'bicycle', 'car']),
    dict(text=NAMES * 8),  # 128 names: several prompts of different lengths
    dict(text='a man riding a horse next to a black dog', tokens_positive=['a man', 'a horse', 'a black dog']),
    dict(text='the small red triangle', tokens_positive=-1),
]


@pytest.fixture(scope='module')
def tiny_model(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.test_cfg.score_thr = 0.0
    torch.manual_seed(0)
    model = MODELS.build(cfg).eval()
    with torch.no_grad():
        model.bbox_head.head.bias0.zero_()  # every anchor scores about 0.5: many boxes to compare
    return model


def _predict(model, image, prompt, **test_cfg):
    model.test_cfg.update(test_cfg)
    h, w = image.shape[-2:]
    samples = []
    for _ in range(image.shape[0]):
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.),
                                             pad_shape=(h, w), batch_input_shape=(h, w)))
        for key, value in prompt.items():
            setattr(sample, key, value)
        samples.append(sample)
    with torch.no_grad():
        return [s.pred_instances for s in model.predict(image, samples)]


@pytest.mark.parametrize('reuse,pairs', [(True, 1), (True, 4), (False, None)])
def test_trimmed_text_gives_the_padded_detections(tiny_model, reuse, pairs):
    image = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    for prompt in PROMPTS:
        padded = _predict(tiny_model, image, prompt, trim_text_padding=False, reuse_text_free_features=reuse,
                          prompt_batch_size=pairs)
        trimmed = _predict(tiny_model, image, prompt, trim_text_padding=True, reuse_text_free_features=reuse,
                           prompt_batch_size=pairs)
        for a, b in zip(padded, trimmed):
            assert len(a.scores) > 10
            assert a.labels.tolist() == b.labels.tolist() and list(a.label_names) == list(b.label_names)
            assert (a.bboxes - b.bboxes).abs().max() < 1e-3
            assert (a.scores - b.scores).abs().max() < 1e-5


def test_trimmed_text_runs_on_the_prompts_tokens(tiny_model):
    tiny_model.test_cfg.update(trim_text_padding=True)
    tok, states = tiny_model._text_free_text('person. bicycle. car', 'cpu')
    assert states.shape[1] == tok['attention_mask'].shape[1] == int(tok['attention_mask'].sum()) < 16
    tiny_model.test_cfg.update(trim_text_padding=False)
    tok, states = tiny_model._text_free_text('person. bicycle. car', 'cpu')
    assert states.shape[1] == tiny_model.language_model.max_tokens
