"""Many prompts per image as one batch (``test_cfg.prompt_batch_size``): detections equal to the plain path (the
whole model per prompt, as the original) and to one (image, prompt) pair per forward, on the tiny FIBER of
``tests/test_models/test_detectors/test_fiber.py`` (fusion gates open, score threshold 0). Tolerances: labels
exact, boxes within 1e-4 px, scores within 1e-6."""
import pytest
import torch

from fiber_mmdet.models.backbones.fusion_swin import SwinState
from fiber_mmdet.models.detectors.prompt_batching import prompt_batches, stack_texts
from .test_fiber import CLASSES, _images, _sample, model  # noqa: F401  (``model`` is a fixture)

#: 30 names; with ``chunked_size=5`` they are 6 prompts of 5 names
NAMES = [f'{c} {i}' for i in range(6) for c in CLASSES]
OTHER_NAMES = [f'{c} number {i}' for i in range(3) for c in CLASSES]  # 15 names: 3 prompts


def _detect(model, images, texts, **test_cfg):
    """``pred_instances`` of each image, the batch sizes the head saw and the number of prompts of each image,
    with ``test_cfg`` changed for the call; ``texts[i]`` is image i's class list."""
    saved = {k: model.test_cfg.get(k) for k in ('chunked_size', *test_cfg)}
    model.test_cfg.update(dict(chunked_size=5, **test_cfg))
    sizes = []
    hook = model.bbox_head.register_forward_hook(lambda m, args, out: sizes.append(args[0][0].shape[0]))
    try:
        model.eval()  # empties the text cache: every path computes its own text-free states
        samples = [_sample(128, 160, t, custom_entities=True) for t in texts]
        num_prompts = [len(model.test_prompts(s)) for s in samples]
        with torch.no_grad():
            preds = [s.pred_instances for s in model.predict(images, samples)]
    finally:
        hook.remove()
        for k, v in saved.items():
            if v is None:
                model.test_cfg.pop(k, None)
            else:
                model.test_cfg[k] = v
    return preds, sizes, num_prompts


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert len(g) > 0
        assert torch.equal(g.labels, e.labels)
        assert torch.allclose(g.bboxes, e.bboxes, atol=1e-4, rtol=0)
        assert torch.allclose(g.scores, e.scores, atol=1e-6, rtol=0)
        assert g.label_names == e.label_names


def _three_ways(model, images, texts, batch_size):
    """Batched, one pair per forward, and plain detections, and the head's batch sizes of the batched run."""
    batched, sizes, num_prompts = _detect(model, images, texts, prompt_batch_size=batch_size)
    single, single_sizes, _ = _detect(model, images, texts, prompt_batch_size=1)
    plain, _, _ = _detect(model, images, texts, reuse_text_free_features=False)
    assert sum(sizes) == len(single_sizes) == sum(num_prompts) and set(single_sizes) == {1}
    return batched, single, plain, sizes


def test_one_image_with_many_prompts_in_one_forward(model):
    batched, single, plain, sizes = _three_ways(model, _images(1), [NAMES], batch_size=8)
    assert sizes == [6]  # the image's 6 prompts together
    _assert_same(batched, plain)
    _assert_same(batched, single)
    # every prompt contributes: labels from all six chunks of five names
    assert set((batched[0].labels // 5).tolist()) == set(range(6))


def test_two_images_with_the_same_prompts_in_one_forward(model):
    batched, single, plain, sizes = _three_ways(model, _images(2, seed=1), [NAMES, NAMES], batch_size=12)
    assert sizes == [12]
    _assert_same(batched, plain)
    _assert_same(batched, single)
    assert not torch.equal(batched[0].bboxes, batched[1].bboxes)  # the rows are not all one image


def test_batch_smaller_than_the_prompts_with_a_remainder(model):
    one, _, plain_one, sizes = _three_ways(model, _images(1, seed=2), [NAMES], batch_size=4)
    assert sizes == [4, 2]
    _assert_same(one, plain_one)
    # two images: 12 pairs in runs of 5, the second run holds prompts of both images
    two, _, plain_two, sizes = _three_ways(model, _images(2, seed=2), [NAMES, NAMES], batch_size=5)
    assert sizes == [5, 5, 2]
    _assert_same(two, plain_two)
    _assert_same(two[:1], one)  # the same image gives the same detections whatever it is batched with


def test_images_with_different_prompts(model):
    texts = [NAMES, OTHER_NAMES]
    batched, single, plain, sizes = _three_ways(model, _images(2, seed=4), texts, batch_size=8)
    assert sizes == [8, 1]  # image 0's 6 prompts with 2 of image 1's, then its last one
    _assert_same(batched, plain)
    _assert_same(batched, single)
    assert set(batched[1].label_names) <= set(OTHER_NAMES) and batched[1].labels.max() < 15


def test_captions_of_different_lengths_are_padded(model):
    """Without ``pad_to_max`` each caption has its own length; the shorter ones are padded in the batch."""
    texts = [NAMES[:25] + ['a much longer name of a class than the others']]
    model.language_model.pad_to_max = False
    try:
        batched, single, plain, sizes = _three_ways(model, _images(1, seed=5), texts, batch_size=8)
        model.test_cfg['chunked_size'] = 5
        lengths = {model.language_model.tokenize([p.caption])['input_ids'].shape[1]
                   for p in model.test_prompts(_sample(8, 8, texts[0], custom_entities=True))}
    finally:
        model.language_model.pad_to_max = True
        model.test_cfg['chunked_size'] = -1
        model.eval()
    assert len(lengths) > 1 and max(lengths) < 256 and sizes == [6]
    _assert_same(batched, plain)
    _assert_same(batched, single)


def test_prompt_batches():
    assert prompt_batches([3, 2], 2) == [[(0, 0), (0, 1)], [(0, 2), (1, 0)], [(1, 1)]]
    assert prompt_batches([31], 8) == [[(0, j) for j in range(k, min(k + 8, 31))] for k in range(0, 31, 8)]
    assert prompt_batches([2, 0, 1], 10) == [[(0, 0), (0, 1), (2, 0)]]
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(ValueError, match='prompt_batch_size'):
            prompt_batches([3], bad)


def test_stack_texts_pads_shorter_captions_and_expands_a_repeated_one():
    a = (torch.ones(1, 3, dtype=torch.long), torch.arange(6.).view(1, 3, 2))
    b = (torch.ones(1, 2, dtype=torch.long), torch.full((1, 2, 2), 7.))
    text, mask = stack_texts(['a', 'b', 'a'], {'a': a, 'b': b})
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 1, 1]]
    assert text[1].tolist() == [[7., 7.], [7., 7.], [0., 0.]]
    assert torch.equal(text[0], a[1][0]) and torch.equal(text[2], a[1][0])
    text, mask = stack_texts(['b'] * 4, {'b': b})
    assert text.shape == (4, 2, 2) and mask.shape == (4, 2)
    assert text.data_ptr() == b[1].data_ptr() and text.stride(0) == 0  # a view, not four copies


def test_swin_state_select_repeats_rows_without_copying_one_image():
    x = torch.randn(2, 6, 4)
    outs = {0: torch.randn(2, 4, 2, 3)}
    state = SwinState(x, (2, 3), 5, outs)
    assert state.select([0, 1]) is state
    three = state.select([1, 1, 1])
    assert three.x.shape == (3, 6, 4) and three.x.stride(0) == 0 and three.outs[0].stride(0) == 0
    assert torch.equal(three.x[2], x[1]) and torch.equal(three.outs[0][0], outs[0][1])
    assert (three.hw_shape, three.position) == ((2, 3), 5)
    mixed = state.select([1, 0, 1])
    assert torch.equal(mixed.x, x[[1, 0, 1]]) and torch.equal(mixed.outs[0], outs[0][[1, 0, 1]])


def test_default_runs_one_pair_per_forward_on_the_cpu(model):
    """Unset (None), the batch follows the device: one pair per forward on the CPU, where 8 measured slower."""
    _, sizes, num_prompts = _detect(model, _images(1), [NAMES], prompt_batch_size=None)
    assert sum(num_prompts) > 1 and sizes == [1] * sum(num_prompts)
