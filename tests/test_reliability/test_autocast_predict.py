"""Prediction under autocast (MMEngine's ``val_cfg`` / ``test_cfg`` ``fp16=True``, or a user's ``torch.autocast``
around the inferencer): anchors, box decoding and NMS run in float32 whatever the head computed in.

In float16 / bfloat16 an 800x1333 image's anchors and boxes near its right edge are quantised to 1 / 8 px,
``batched_nms``' per-class offset (label x max coordinate) overflows float16 beyond ~49 labels, and mmcv's CPU
NMS takes no half-precision boxes."""
import copy

import pytest
import torch

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

H, W = 800, 1333  # a COCO test size: the last anchors reach x = 1333 + 32
NUM_LABELS = 80
LOW_PRECISION = [torch.bfloat16, torch.float16]


def _head(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg.bbox_head)
    cfg.update(use_dcn=False, num_dyhead_blocks=1, num_tokens=NUM_LABELS + 2,
               test_cfg=dict(tiny_model_cfg.test_cfg, score_thr=0.3))
    torch.manual_seed(0)
    return MODELS.build(cfg)


def _head_outputs(head, dtype):
    """Head outputs of one 800x1333 image (padded to 800x1344) with values representable in ``dtype``: token
    logits (1, HW, T), box deltas (1, 4, H, W), centerness logits (1, 1, H, W) at strides 8-128."""
    g = torch.Generator().manual_seed(0)
    sizes = [(-(-800 // s), -(-1344 // s)) for s in (8, 16, 32, 64, 128)]
    logits = [torch.randn(1, h * w, head.num_tokens, generator=g).to(dtype) for h, w in sizes]
    deltas = [(torch.randn(1, 4, h, w, generator=g) * 0.5).to(dtype) for h, w in sizes]
    centerness = [torch.randn(1, 1, h, w, generator=g).to(dtype) for h, w in sizes]
    return logits, deltas, centerness


META = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(800, 1344), batch_input_shape=(800, 1344),
            scale_factor=(1.0, 1.0))
LABEL_TO_TOKENS = {label: [label] for label in range(1, NUM_LABELS + 1)}  # label j: token j (0 is <s>)


@pytest.mark.parametrize('dtype', LOW_PRECISION, ids=str)
def test_head_post_processing_is_float32_under_autocast(tiny_model_cfg, dtype):
    """The head's low-precision outputs under autocast give the detections that the same values give in
    float32, to 1e-3 px: decoding in ``dtype`` moves boxes by up to 4 px (bfloat16) / 0.5 px (float16)."""
    head = _head(tiny_model_cfg)
    outs = _head_outputs(head, dtype)
    kwargs = dict(batch_img_metas=[META], batch_token_positive_maps=[LABEL_TO_TOKENS], rescale=True)
    expected = head.predict_by_feat(*[[t.float() for t in level] for level in outs], **kwargs)[0]
    with torch.autocast('cpu', dtype=dtype):
        got = head.predict_by_feat(*outs, **kwargs)[0]
    assert len(expected) == 100 and expected.labels.max() >= 50  # labels whose NMS offset overflows float16
    assert expected.bboxes[:, 2].max() > 1300  # boxes where float16 / bfloat16 steps are 1 / 8 px
    assert got.bboxes.dtype == got.scores.dtype == torch.float32
    assert torch.equal(got.labels, expected.labels)
    assert torch.allclose(got.bboxes, expected.bboxes, atol=1e-3, rtol=0)
    assert torch.allclose(got.scores, expected.scores, atol=1e-6, rtol=0)


# words of one token each for the tests' tokenizer: 80 two-word names fit one 256-token prompt
WORDS = ['airplane', 'beach', 'bicycle', 'boat', 'bus', 'car', 'circle', 'dog', 'frisbee', 'horse', 'man', 'park',
         'star', 'train', 'triangle', 'truck', 'light']
COLOURS = ['red', 'blue', 'green', 'yellow', 'black', 'small']
NAMES = [f'{c} {w}' for w in WORDS for c in COLOURS][:NUM_LABELS]


@pytest.fixture(scope='module')
def tiny_fiber(tiny_model_cfg):
    """The tiny FIBER (plain convolutions in the head), every candidate kept (score_thr 0)."""
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.bbox_head.use_dcn = False
    cfg.test_cfg.score_thr = 0.0
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


class HeadOutputs:
    """Keeps what the bbox head returns (token logits, box deltas, centerness per level)."""

    def __init__(self, head) -> None:
        self.outs = None
        head.register_forward_hook(self)

    def __call__(self, module, args, outs) -> None:
        self.outs = outs


@pytest.mark.parametrize('dtype', LOW_PRECISION, ids=str)
def test_model_prediction_under_autocast(tiny_fiber, dtype):
    """The tiny FIBER on a 64x1333 image (as wide as a COCO test image, a twelfth of its height to stay cheap)
    with 80 class names in one prompt, under CPU autocast: it runs, outputs float32, and its detections are the
    float32 post-processing of its own (low-precision) head outputs."""
    image = torch.randn(1, 3, 64, 1344, generator=torch.Generator().manual_seed(0))
    meta = dict(META, img_shape=(64, W), ori_shape=(64, W), pad_shape=(64, 1344), batch_input_shape=(64, 1344))

    def sample():
        s = DetDataSample(metainfo=meta)
        s.text = NAMES
        return s

    heads = HeadOutputs(tiny_fiber.bbox_head)
    with torch.no_grad():
        assert len(tiny_fiber.test_prompts(sample())) == 1  # all 80 labels in one prompt
        with torch.autocast('cpu', dtype=dtype):
            got = tiny_fiber.predict(image, [sample()])[0].pred_instances
        assert heads.outs[1][0].dtype == dtype  # the head did compute in low precision
        expected = tiny_fiber.bbox_head.predict_by_feat(
            *[[t.float() for t in level] for level in heads.outs], batch_img_metas=[meta],
            batch_token_positive_maps=[tiny_fiber.test_prompts(sample())[0].label_to_tokens], rescale=True)[0]
    assert len(got) == 100 and got.bboxes.dtype == got.scores.dtype == torch.float32
    assert torch.equal(got.labels, expected.labels)
    assert torch.allclose(got.bboxes, expected.bboxes, atol=1e-3, rtol=0)
    assert torch.allclose(got.scores, expected.scores, atol=1e-6, rtol=0)
