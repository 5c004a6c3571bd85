import copy

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

CLASSES = ['person', 'bicycle', 'car', 'dog', 'traffic light']


def _sample(h, w, text, boxes=None, labels=None, **meta):
    s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                    batch_input_shape=(h, w), scale_factor=(1., 1.), img_id=0))
    s.text = text
    for k, v in meta.items():
        s.set_field(v, k, field_type='metainfo')
    if boxes is not None:
        s.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                      labels=torch.tensor(labels, dtype=torch.long))
    return s


@pytest.fixture(scope='module')
def model(tiny_model_cfg):
    torch.manual_seed(0)
    m = MODELS.build(copy.deepcopy(tiny_model_cfg))
    m.init_weights()
    # open the fusion gates so that the text really changes the image features in these tests
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(('i2t.gate', 'alpha_t2i')):
                p.fill_(0.5)
    # an untrained head scores every box ~sigmoid(bias0) = 0.01: keep all candidates so results are non-empty
    m.test_cfg['score_thr'] = 0.0
    m.bbox_head.test_cfg['score_thr'] = 0.0
    return m


def _images(n=2, h=128, w=160, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_loss_with_class_names_and_with_grounding_captions(model):
    model.train()
    det = _sample(128, 160, CLASSES, [[10, 20, 80, 100], [60, 30, 150, 120]], [0, 3])
    caption = 'a man riding a horse next to a black dog'
    grounding = _sample(128, 160, caption, [[5, 5, 60, 90], [70, 40, 140, 110]], [0, 1],
                        tokens_positive={0: [[0, 5]], 1: [[29, 40]]})
    losses = model.loss(_images(), [det, grounding])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    total = sum(losses.values())
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    grads = [p.grad for n, p in model.named_parameters() if 'i2t' in n and p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    # positive maps are binary rows over the batch's caption tokens: the longest caption and one padding column
    # (train_cfg.trim_text_padding)
    longest = max(len(model.language_model.tokenizer(c)['input_ids']) for c in (caption, '. '.join(CLASSES)))
    maps = grounding.gt_instances.positive_maps
    assert maps.shape == (2, longest + 1) and set(maps.unique().tolist()) <= {0.0, 1.0}
    assert maps[0].sum() >= 1 and maps[1].sum() >= 1
    model.zero_grad()


def test_missing_tokens_positive_entry_is_an_error(model):
    model.train()
    s = _sample(128, 160, 'a dog', [[5, 5, 60, 90]], [3], tokens_positive={0: [[2, 5]]})
    with pytest.raises(KeyError, match='GT labels \\[3\\]'):
        model.loss(_images(1), [s])


def test_predict_class_names(model):
    model.eval()
    samples = [_sample(128, 160, CLASSES, custom_entities=True) for _ in range(2)]
    with torch.no_grad():
        out = model.predict(_images(), samples)
    for s in out:
        pred = s.pred_instances
        assert len(pred) <= 100
        assert pred.bboxes.shape[-1] == 4
        assert pred.labels.min() >= 0 and pred.labels.max() < len(CLASSES)
        assert pred.label_names == [CLASSES[i] for i in pred.labels.tolist()]
        assert (pred.bboxes[:, 2] <= 159).all() and (pred.bboxes[:, 3] <= 127).all()


def test_chunked_prompts_equal_running_each_chunk_alone(model):
    """Many prompts per image reuse the text-free image part; results equal the plain per-prompt path."""
    model.eval()
    names = [f'{c} {i}' for i in range(12) for c in CLASSES][:40]
    cfg = model.test_cfg
    cfg['chunked_size'] = 15
    try:
        s = _sample(128, 160, names, custom_entities=True)
        with torch.no_grad():
            pred = model.predict(_images(1), [s])[0].pred_instances
            prompts = model.test_prompts(s)
            assert [p.label_offset for p in prompts] == [0, 15, 30]
            expected = []
            for p in prompts:
                tok = model.language_model.tokenize([p.caption])
                visual, lang = model.extract_feat(_images(1), tok['input_ids'], tok['attention_mask'])
                s.token_positive_map = p.label_to_tokens
                r = model.bbox_head.predict(visual, lang, [s])[0]
                r.labels = r.labels + p.label_offset
                expected.append(r)
        expected = InstanceData.cat(expected)
    finally:
        cfg['chunked_size'] = -1
    assert torch.equal(pred.labels, expected.labels)
    assert torch.allclose(pred.bboxes, expected.bboxes, atol=1e-4)
    assert torch.allclose(pred.scores, expected.scores, atol=1e-6)


def _predict_all(model, batches, names, reuse):
    model.test_cfg['reuse_text_free_features'] = reuse
    out = []
    with torch.no_grad():
        for seed, n in batches:
            samples = [_sample(128, 160, names, custom_entities=True) for _ in range(n)]
            out += [s.pred_instances for s in model.predict(_images(n, seed=seed), samples)]
    return out


def test_cached_text_free_parts_equal_the_plain_path(model):
    """Text-free image part once per image, text-free text part once per prompt across images: same outputs as
    running the whole model for every prompt of every image (the original's path)."""
    model.eval()
    names = [f'{c} {i}' for i in range(12) for c in CLASSES][:40]
    model.test_cfg['chunked_size'] = 15  # 3 prompts per image
    batches = [(1, 2), (2, 1), (3, 1)]  # a batch of 2 images, then two single images
    try:
        cached = _predict_all(model, batches, names, reuse=True)
        assert len(model._text_cache) == 3
        kept = {key: entry[1] for key, entry in model._text_cache.items()}
        again = _predict_all(model, batches[1:2], names, reuse=True)[0]
        assert all(model._text_cache[k][1] is t for k, t in kept.items())  # reused, not recomputed
        plain = _predict_all(model, batches, names, reuse=False)
    finally:
        model.test_cfg['chunked_size'] = -1
        model.test_cfg['reuse_text_free_features'] = True
    assert len(cached) == len(plain) == 4
    for c, p in zip(cached + [again], plain + [plain[2]]):
        assert len(c) > 0
        _assert_same_detections(c, p)


def _assert_same_detections(a, b, box_tol: float = 1e-4, score_tol: float = 1e-6) -> None:
    """The same detections, matched one to one (label equal, box and score within tolerance), in any order among
    near-equal scores: the random model scores many boxes alike, and rounding (~3e-8 between batch layouts) can
    swap two of them in the ranking."""
    assert len(a) == len(b)
    close = ((a.labels[:, None] == b.labels[None])
             & ((a.scores[:, None] - b.scores[None]).abs() <= score_tol)
             & ((a.bboxes[:, None] - b.bboxes[None]).abs().amax(-1) <= box_tol))
    taken = torch.zeros(len(b), dtype=torch.bool)
    for i in range(len(a)):
        free = torch.nonzero(close[i] & ~taken).flatten()
        assert len(free), f'detection {i} (label {int(a.labels[i])}, score {float(a.scores[i]):.6f}) has no match'
        taken[free[0]] = True


def test_text_cache_is_bounded_and_cleared_when_weights_can_change(model):
    model.eval()
    model.test_cfg['text_cache_size'] = 2
    try:
        with torch.no_grad():
            for caption in ('a dog.', 'a car.', 'a person.'):
                s = _sample(128, 160, caption, tokens_positive=[[(2, len(caption) - 1)]])
                model.predict(_images(1), [s])
        assert [k.caption for k in model._text_cache] == ['a car.', 'a person.']  # least recently used dropped
        model.load_state_dict(model.state_dict())
        assert len(model._text_cache) == 0
        with torch.no_grad():
            model.predict(_images(1), [_sample(128, 160, 'a dog.', tokens_positive=[[(2, 5)]])])
        assert len(model._text_cache) == 1
        model.train()
        assert len(model._text_cache) == 0
    finally:
        model.test_cfg['text_cache_size'] = 64
        model.eval()


def test_text_cache_is_keyed_by_device_dtype_and_autocast(model):
    """Text-free states cached in float32 are not served to the same model under bfloat16 autocast or moved
    to float64: each gets states of its own dtype, equal to computing them with an empty cache."""
    model.eval()
    caption = 'a dog. a car.'

    def cold():
        tok = model.language_model.tokenize([caption], pad_to_max=False if model._trim_text() else None)
        return model.language_model.forward_text_only(tok['input_ids'], tok['attention_mask'])

    try:
        with torch.no_grad():
            model._text_cache.clear()
            fp32 = model._text_free_text(caption, 'cpu')[1]
            with torch.autocast('cpu', dtype=torch.bfloat16):
                amp = model._text_free_text(caption, 'cpu')[1]
                amp_cold = cold()
            assert model._text_free_text(caption, 'cpu')[1] is fp32  # the float32 entry is still served
            model.to(torch.float64)
            fp64 = model._text_free_text(caption, 'cpu')[1]
            fp64_cold = cold()
        assert fp32.dtype == torch.float32
        assert amp.dtype == amp_cold.dtype and torch.equal(amp, amp_cold)
        assert not torch.equal(amp.float(), fp32)  # bfloat16 matmuls: other states than in float32
        assert fp64.dtype == torch.float64 and torch.equal(fp64, fp64_cold)
        assert [(k.weights_dtype, k.autocast_dtype) for k in model._text_cache] == [
            (torch.float32, torch.bfloat16), (torch.float32, None), (torch.float64, None)]
    finally:
        model.to(torch.float32)
        model._text_cache.clear()


def test_chunked_equals_unchunked_when_all_classes_fit_one_prompt(model):
    model.eval()
    s = _sample(128, 160, CLASSES, custom_entities=True)
    with torch.no_grad():
        model.test_cfg['chunked_size'] = 40  # LVIS' setting, more than the 5 names
        try:
            assert len(model.test_prompts(s)) == 1
            chunked = model.predict(_images(1), [s])[0].pred_instances
        finally:
            model.test_cfg['chunked_size'] = -1
        unchunked = model.predict(_images(1), [_sample(128, 160, CLASSES, custom_entities=True)])[0].pred_instances
    assert len(chunked) > 0
    assert torch.equal(chunked.labels, unchunked.labels)
    assert torch.equal(chunked.bboxes, unchunked.bboxes)
    assert torch.equal(chunked.scores, unchunked.scores)


def test_test_prompts_clean_names_as_the_original(model):
    """create_queries_and_maps cleans the names of detection prompts (LVIS: 'bow_(weapon)' -> 'bow ')."""
    prompts = model.test_prompts(_sample(128, 160, ['aerosol_can', 'bow_(weapon)', 'traffic light']))
    assert [p.caption for p in prompts] == ['aerosol can. bow . traffic light']
    assert prompts[0].entities == ['aerosol_can', 'bow_(weapon)', 'traffic light']  # label names stay raw


def test_long_class_list_is_split_not_truncated(model):
    model.eval()
    names = [f'class number {i}' for i in range(120)]
    prompts = model.test_prompts(_sample(128, 160, names, custom_entities=True))
    assert len(prompts) > 1
    assert sum(len(p.entities) for p in prompts) == 120
    for p in prompts:
        assert len(model.language_model.tokenizer(p.caption)['input_ids']) <= 256
        assert all(tokens for tokens in p.label_to_tokens.values())


def test_phrase_grounding_and_referring_expression(model):
    model.eval()
    caption = 'a man riding a horse next to a black dog'
    phrases = _sample(128, 160, caption, tokens_positive=[[[0, 5]], [[13, 20]], [[29, 40]]])
    refexp = _sample(128, 160, 'the black dog on the left', tokens_positive=-1)
    with torch.no_grad():
        p1 = model.predict(_images(1), [phrases])[0].pred_instances
        p2 = model.predict(_images(1, seed=3), [refexp])[0].pred_instances
    assert p1.labels.max() < 3 and set(p1.label_names) <= {'a man', 'a horse', 'a black dog'}
    assert (p2.labels == 0).all()


def test_free_caption_without_spans_is_an_error(model):
    model.eval()
    with pytest.raises(ValueError, match='tokens_positive'):
        model.test_prompts(_sample(128, 160, 'a man riding a horse'))


def test_mismatched_fusion_pairing_is_rejected(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.language_model.fused_layers = [3, 4, 5]
    cfg.language_model.image_dims = [128, 256, 256]
    with pytest.raises(ValueError, match='fuses 4 blocks'):
        MODELS.build(cfg)
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.language_model.image_dims = [128, 128, 128, 256]
    with pytest.raises(ValueError, match='image widths'):
        MODELS.build(cfg)


def test_tensor_mode(model):
    model.eval()
    with torch.no_grad():
        logits, boxes, ctr = model(_images(1), [_sample(128, 160, CLASSES)], mode='tensor')
    assert len(logits) == 5 and logits[0].shape == (1, 16 * 20, 256)
    assert boxes[0].shape == (1, 4, 16, 20) and ctr[0].shape == (1, 1, 16, 20)


def test_changing_chunked_size_resplits_the_same_names(model):
    names = [f'{c} {i}' for i in range(4) for c in CLASSES]  # 20 names
    s = _sample(128, 160, names, custom_entities=True)
    try:
        model.test_cfg['chunked_size'] = 10
        assert [p.label_offset for p in model.test_prompts(s)] == [0, 10]
        model.test_cfg['chunked_size'] = 5
        assert [p.label_offset for p in model.test_prompts(s)] == [0, 5, 10, 15]
    finally:
        model.test_cfg['chunked_size'] = -1
    assert len(model.test_prompts(s)) == 1
