"""ODToGroundingCaption: FIBER's detection -> grounding caption, with a real trained tokenizer."""
import copy
import pickle
import random
from collections import Counter

import numpy as np
import pytest

from fiber_mmdet.datasets.transforms import ODToGroundingCaption, clean_name
from fiber_mmdet.utils import build_positive_map
from .conftest import class_names, label_map, od_results, seed_all


def names_in_caption(caption: str):
    return caption.split('. ')


def test_clean_name():
    assert clean_name('__background__') == ' background '
    assert clean_name('traffic_light') == 'traffic light'
    assert clean_name('mouse (computer)') == 'mouse '
    assert clean_name('Person') == 'Person'  # the reference does not lower-case


def test_control_prob_validation(tokenizer_dir):
    with pytest.raises(ValueError):
        ODToGroundingCaption(tokenizer_dir, control_prob=(0.5, 0.5, 0.5, 0.0))
    with pytest.raises(ValueError):
        ODToGroundingCaption(tokenizer_dir, control_prob=(0.1, 0.1))
    # PRE.yaml's 4th value (drop positives) is accepted: the reference's assert is not reproduced.
    ODToGroundingCaption(tokenizer_dir, control_prob=(0.05, 0.05, 0.5, 0.2))


def test_num_negatives_distribution(tokenizer_dir):
    """The control draw: 0.05 -> 1, 0.05 -> 0, 0.5 -> all (85), else 1 + randint(85)."""
    transform = ODToGroundingCaption(tokenizer_dir)
    seed_all(0)
    n = 20000
    counts = Counter(transform.draw_num_negatives(85, 3) for _ in range(n))
    rest = 0.4 / 85
    expected = {k: rest for k in range(1, 86)}
    expected[0] = 0.05
    expected[1] += 0.05
    expected[85] += 0.5
    assert set(counts) <= set(expected)
    for k, p in expected.items():
        sigma = (p * (1 - p) / n) ** 0.5
        assert abs(counts[k] / n - p) < 4 * sigma + 1e-4, (k, counts[k] / n, p)


def _caption_level_expectation(num_candidates: int, control_prob):
    """P(#negatives written) for a sample with one positive class among ``num_candidates`` candidates and a budget
    large enough for all of them: a drawn set of K ids contains the positive with probability K / N."""
    p1, p2, p3, _ = control_prob
    n = num_candidates
    p_k = Counter({1: p1, 0: p2})
    p_k[n] += p3
    for k in range(1, n + 1):
        p_k[k] += (1 - p1 - p2 - p3) / n
    expected = Counter()
    for k, p in p_k.items():
        expected[k] += p * (1 - k / n)
        if k:
            expected[k - 1] += p * k / n
    return expected


def test_caption_negatives_distribution_and_background(tokenizer_dir):
    names = label_map(40)
    transform = ODToGroundingCaption(tokenizer_dir)
    seed_all(1)
    n = 3000
    counts = Counter()
    background_seen = 0
    for _ in range(n):
        out = transform(od_results(names, [7, 7]))
        written = names_in_caption(out['text'])
        assert written.count(names['7']) == 1  # the positive is never also written as a negative
        counts[len(written) - 1] += 1
        background_seen += ' background ' in written
    expected = _caption_level_expectation(41, transform.control_prob)  # 40 classes + background
    assert max(counts) <= 40
    for k, p in expected.items():
        sigma = (p * (1 - p) / n) ** 0.5
        assert abs(counts[k] / n - p) < 4 * sigma + 2e-3, (k, counts[k] / n, p)
    # background is one of the 41 candidates: written iff drawn, i.e. with probability E[K] / 41
    mean_k = 0.05 * 1 + 0.5 * 41 + 0.4 * 21
    assert abs(background_seen / n - mean_k / 41) < 0.03


def test_spans_and_positive_maps(tokenizer_dir, tokenizer):
    names = label_map(120)
    transform = ODToGroundingCaption(tokenizer_dir)
    rng = np.random.default_rng(0)
    for seed in range(200):
        seed_all(seed)
        labels = rng.choice(120, size=int(rng.integers(1, 8)), replace=True)
        results = od_results(names, labels)
        original = results['gt_bboxes'].tensor.clone()
        out = transform(results)
        caption, tokens_positive = out['text'], out['tokens_positive']
        assert isinstance(caption, str) and not caption.endswith('. ')
        new_labels = out['gt_bboxes_labels']
        assert new_labels.dtype == np.int64 and len(new_labels) == len(labels)
        assert sorted(tokens_positive) == sorted(set(new_labels.tolist()))
        assert (out['gt_bboxes'].tensor == original).all()  # no box dropped, order kept
        for old, new in zip(labels, new_labels):
            (beg, end), = tokens_positive[int(new)]
            assert caption[beg:end] == clean_name(names[str(old)])
            assert names_in_caption(caption)[int(new)] == clean_name(names[str(old)])  # label = position
        tokenized = tokenizer(caption, max_length=256, truncation=True, padding='max_length')
        assert sum(tokenized['attention_mask']) <= 256
        rows = sorted(tokens_positive)
        positive = build_positive_map(tokenized, [tokens_positive[k] for k in rows], num_tokens=256)
        assert positive.unmapped == []
        for row, label in zip(positive.positive_map, rows):
            token_ids = [tokenized['input_ids'][i] for i in row.nonzero().flatten().tolist()]
            (beg, end), = tokens_positive[label]
            assert tokenizer.decode(token_ids).strip() == caption[beg:end].strip()
    assert transform.num_unmapped_spans == 0 and transform.num_dropped_boxes == 0


def test_budget_respected_with_many_negatives(tokenizer_dir, tokenizer):
    names = label_map(120)
    transform = ODToGroundingCaption(tokenizer_dir, control_prob=(0.0, 0.0, 1.0, 0.0))  # always 85 negatives
    max_cost = max(transform.num_name_tokens(name) for name in list(names.values()) + ['__background__'])
    binding = 0
    for seed in range(30):
        seed_all(seed)
        out = transform(od_results(names, [3, 50, 50, 99]))
        written = names_in_caption(out['text'])
        cost = sum(transform.num_name_tokens(name) for name in written)
        assert len(tokenizer(out['text'])['input_ids']) <= 256
        # negatives are kept while the remaining budget stays > 0, so the caption costs at most 253 tokens
        assert cost <= 253
        if len(written) - 3 < 82:  # the pre-screen stopped early: the next negative did not fit
            binding += 1
            assert cost >= 254 - max_cost
    assert binding > 0


def test_overflow_guard_drops_whole_classes(tokenizer_dir, tokenizer, log_messages):
    names = label_map(120)
    transform = ODToGroundingCaption(tokenizer_dir)
    labels = np.repeat(np.arange(120), 2)  # every class positive, two boxes each: far more than 254 tokens
    cost = {k: transform.num_name_tokens(v) for k, v in names.items()}
    assert sum(cost.values()) > 254
    kept_sets = set()
    for seed in range(5):
        seed_all(seed)
        results = od_results(names, labels)
        boxes = results['gt_bboxes'].tensor.clone()
        out = transform(results)
        written = names_in_caption(out['text'])
        name_to_key = {clean_name(v): k for k, v in names.items()}
        kept = {name_to_key[name] for name in written}
        kept_sets.add(frozenset(kept))
        # no negatives once the positives overflowed (the reference's returned length includes the overflow)
        assert len(written) == len(kept)
        total = sum(cost[k] for k in kept)
        assert total <= 254
        assert any(total + cost[k] > 254 for k in names if k not in kept)
        # exactly the boxes of the kept classes survive, in their original order, with all per-box keys
        keep = [i for i, label in enumerate(labels) if str(label) in kept]
        assert (out['gt_bboxes'].tensor == boxes[keep]).all()
        assert len(out['gt_ignore_flags']) == len(keep) == len(out['gt_bboxes_labels'])
        for old, new in zip(labels[keep], out['gt_bboxes_labels']):
            (beg, end), = out['tokens_positive'][int(new)]
            assert out['text'][beg:end] == clean_name(names[str(old)])
    assert len(kept_sets) > 1  # a different subset each time: the positives are shuffled before the walk
    assert transform.num_dropped_boxes > 0
    assert any('do not fit in 254 tokens' in m for m in log_messages)


def test_two_long_classes_only_one_fits(tokenizer_dir, tokenizer):
    long_a = ' '.join(class_names(120)[:65])  # 127 < tokens < 254 each, so exactly one of the two fits
    long_b = ' '.join(class_names(120)[55:120])
    names = {'0': long_a, '1': long_b, '2': 'red cup'}
    transform = ODToGroundingCaption(tokenizer_dir)
    assert all(127 < transform.num_name_tokens(name) <= 254 for name in (long_a, long_b))
    seen = Counter()
    for seed in range(20):
        seed_all(seed)
        out = transform(od_results(names, [0, 1, 1]))
        assert out['text'] in (clean_name(long_a), clean_name(long_b))  # the other one overflowed: no negatives
        kept_label = 'b' if out['text'] == clean_name(long_b) else 'a'
        seen[kept_label] += 1
        assert len(out['gt_bboxes_labels']) == (1 if kept_label == 'a' else 2)
    assert seen['a'] > 0 and seen['b'] > 0


def test_positives_always_kept_and_no_empty_names(tokenizer_dir):
    names = label_map(10)
    transform = ODToGroundingCaption(tokenizer_dir, control_prob=(0.0, 0.0, 0.0, 1.0))  # drop-positive coin = 1
    for seed in range(50):
        seed_all(seed)
        out = transform(od_results(names, [1, 2, 3]))
        written = names_in_caption(out['text'])
        assert {clean_name(names[k]) for k in '123'} <= set(written)
        assert 3 <= len(written) <= 3 + 8  # 1 + randint(11) drawn among 7 other classes + background


def test_image_without_boxes(tokenizer_dir):
    names = label_map(10)
    transform = ODToGroundingCaption(tokenizer_dir)
    seed_all(0)
    out = transform(od_results(names, []))
    assert out['tokens_positive'] == {} and len(out['gt_bboxes_labels']) == 0
    assert len(out['gt_bboxes']) == 0 and isinstance(out['text'], str)


def test_label_map_file_and_unknown_label(tokenizer_dir, tmp_path):
    import json
    path = tmp_path / 'label_map.json'
    path.write_text(json.dumps({'0': 'person', '1': 'traffic_light'}))
    transform = ODToGroundingCaption(tokenizer_dir, label_map_file=str(path), control_prob=(0, 1, 0, 0))
    results = od_results({}, [1])
    del results['text']
    seed_all(0)
    out = transform(results)
    assert out['text'] == 'traffic light' and out['tokens_positive'] == {0: [[0, 13]]}
    with pytest.raises(KeyError):
        transform(od_results({'0': 'person'}, [5]))


def test_grounding_sample_passes_through(tokenizer_dir, log_messages):
    caption = 'A man in a red shirt holds a wooden chair.'
    phrases = {0: dict(phrase='A man', tokens_positive=[[0, 5]]),
               1: dict(phrase='a wooden chair', tokens_positive=[[27, 41]])}
    results = od_results({}, [1, 0, 1])
    results.update(text=caption, phrases=phrases)
    transform = ODToGroundingCaption(tokenizer_dir)
    out = transform(copy.deepcopy(results))
    assert out['text'] == caption  # verbatim: no lower-casing, nothing appended
    assert out['tokens_positive'] == {0: [[0, 5]], 1: [[27, 41]]}
    assert out['gt_bboxes_labels'].tolist() == [1, 0, 1]
    # a span beyond the 256-token window maps to nothing and is reported
    long_caption = caption + ' ' + ' '.join(['red apple'] * 200) + ' green lamp'
    results.update(text=long_caption, phrases={0: phrases[0], 1: dict(
        phrase='green lamp', tokens_positive=[[len(long_caption) - 10, len(long_caption)]])})
    transform(results)
    assert transform.num_unmapped_spans == 1
    assert any('map to no token' in m for m in log_messages)


def test_tokenizer_lazy_and_not_pickled(tokenizer_dir):
    transform = ODToGroundingCaption(tokenizer_dir)
    assert transform._tokenizer._tokenizer is None  # nothing loaded at construction
    seed_all(0)
    transform(od_results(label_map(5), [1]))
    assert transform._tokenizer._tokenizer is not None
    clone = pickle.loads(pickle.dumps(transform))
    assert clone._tokenizer._tokenizer is None  # each worker loads its own copy
    random.seed(0)
    np.random.seed(0)
    a = clone(od_results(label_map(5), [1]))['text']
    seed_all(0)
    b = transform(od_results(label_map(5), [1]))['text']
    assert a == b


@pytest.mark.parametrize('vg', [False, True])
def test_same_output_contract_as_mmdet(tokenizer_dir, vg):
    """Our output has the structure of mmdet's RandomSamplingNegPos, so the detector handles both alike."""
    from mmdet.datasets.transforms import RandomSamplingNegPos
    names = label_map(20)
    results = od_results(names, [4, 9, 4])
    if vg:
        results.update(text='a red apple near a red bottle.',
                       phrases={4: dict(phrase='a red apple', tokens_positive=[[0, 11]]),
                                9: dict(phrase='a red bottle', tokens_positive=[[17, 29]])})
    outputs = []
    for transform in (ODToGroundingCaption(tokenizer_dir), RandomSamplingNegPos(tokenizer_name=tokenizer_dir)):
        seed_all(0)
        outputs.append(transform(copy.deepcopy(results)))
    for out in outputs:
        labels = np.asarray(out['gt_bboxes_labels'])
        assert isinstance(out['text'], str) and labels.dtype == np.int64 and len(labels) == 3
        assert labels[0] == labels[2] != labels[1]
        assert isinstance(out['tokens_positive'], dict) and set(out['tokens_positive']) == set(labels.tolist())
        for label, spans in out['tokens_positive'].items():
            assert isinstance(label, int) and all(len(span) == 2 for span in spans)
        (beg, end), = out['tokens_positive'][int(labels[1])]
        assert out['text'][beg:end] == ('a red bottle' if vg else names['9'])


def test_registered():
    from mmdet.registry import TRANSFORMS
    assert TRANSFORMS.get('ODToGroundingCaption') is ODToGroundingCaption
