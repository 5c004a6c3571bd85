"""``trim_text_padding``: prompts run on their own tokens instead of ``max_tokens``; padding is masked everywhere.

At test time the detections equal the padded run's (labels exactly, boxes within 1e-3 px, scores within 1e-5) for
class lists (one and several prompts per image), phrases and expressions, with and without the text-free reuse,
one or several (image, prompt) pairs per forward. In training the losses and every gradient equal the padded
batch's."""
import copy

import pytest
import torch

from mmengine.structures import InstanceData

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


def _training_batch():
    """Two images: a class list and a grounding caption of different lengths, boxes on both."""
    samples = []
    for text, boxes, labels, spans in [
            (['person', 'bicycle', 'car', 'dog'], [[10, 20, 80, 90], [60, 30, 120, 94]], [0, 3], None),
            ('a man riding a horse next to a black dog and a small red bicycle', [[5, 5, 60, 90]], [0],
             {0: [[29, 40]]})]:
        sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128), pad_shape=(96, 128),
                                             batch_input_shape=(96, 128), scale_factor=(1., 1.)))
        sample.text = text
        if spans is not None:
            sample.tokens_positive = spans
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                           labels=torch.tensor(labels))
        samples.append(sample)
    return samples


def test_trimmed_training_batch_gives_the_padded_losses_and_gradients(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    # dropout draws its masks over the text's width: without it the two runs compute the same function
    cfg.backbone.drop_path_rate = 0.0
    cfg.language_model.config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg.neck.plugin.drop_prob = 0.0
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    with torch.no_grad():  # open the fusion gates: the text changes the image features
        for name, p in model.named_parameters():
            if name.endswith(('i2t.gate', 'alpha_t2i')):
                p.fill_(0.5)
    model.train()
    image = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    results = {}
    for trim in (False, True):
        model.train_cfg['trim_text_padding'] = trim
        model.zero_grad()
        samples = _training_batch()
        losses = model.loss(image, samples)
        sum(losses.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[trim] = (losses, grads, samples[0].gt_instances.positive_maps.shape[-1])
    (padded, padded_grads, padded_width), (trimmed, trimmed_grads, trimmed_width) = results[False], results[True]
    assert padded_width == model.language_model.max_tokens and trimmed_width < 24
    for key in padded:
        assert torch.allclose(padded[key], trimmed[key], rtol=1e-5, atol=1e-6), key
    assert padded_grads.keys() == trimmed_grads.keys() and len(padded_grads) > 100
    for name, grad in padded_grads.items():
        # float rounding of reductions over another width: within 1e-4 of each tensor's scale, or 3e-7 for
        # gradients that are sums of cancelling terms (a fusion gate's ~1e-5, whose rounding reaches ~1.2e-7;
        # the key biases' true 0)
        error = (grad - trimmed_grads[name]).abs().max().item()
        assert error <= 1e-4 * grad.abs().max().item() + 3e-7, name
