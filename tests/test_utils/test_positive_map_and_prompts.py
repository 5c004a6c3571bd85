import pytest
import torch
from transformers import AutoTokenizer

from fiber_mmdet.utils import (build_class_prompt, build_positive_map, chunk_class_names, clean_name,
                               label_to_token_indices)


@pytest.fixture(scope='module')
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def test_class_prompt_spans_and_cleaning():
    caption, spans = build_class_prompt(['person', 'traffic_light', 'bow_(weapon)'])
    assert caption == 'person. traffic_light. bow_(weapon)'
    assert [caption[b:e] for (b, e), in spans] == ['person', 'traffic_light', 'bow_(weapon)']
    caption, spans = build_class_prompt(['person', 'traffic_light', 'bow_(weapon)'], clean=True)
    assert caption == 'person. traffic light. bow '
    assert clean_name('hot_dog  (food)') == 'hot dog '


def test_caption_prompt_prefix_and_suffix():
    caption, spans = build_class_prompt(['fish', 'penguin'], caption_prompt={
        'penguin': dict(suffix=' , which is black and white'), 'fish': dict(prefix='a ', name='fishes')})
    assert caption == 'a fishes. penguin , which is black and white'
    assert [caption[b:e] for (b, e), in spans] == ['fishes', 'penguin']


def test_caption_prompt_is_found_by_raw_name_and_its_name_is_not_cleaned():
    caption, spans = build_class_prompt(['Cottontail_Rabbit', 'hot_dog'], clean=True, caption_prompt={
        'Cottontail_Rabbit': dict(name='rabbit_(cottontail)'), 'hot dog': dict(prefix='a ')})
    assert caption == 'rabbit_(cottontail). a hot dog'
    assert [caption[b:e] for (b, e), in spans] == ['rabbit_(cottontail)', 'hot dog']


def test_positive_map_columns_follow_the_tokenizer(tokenizer):
    caption = 'person. traffic light. dog'
    tok = tokenizer(caption)
    result = build_positive_map(tok, [[(0, 6)], [(8, 21)], [(23, 26)], [(23, 24), (0, 6)]], num_tokens=256)
    pm = result.positive_map
    assert pm.shape == (4, 256) and result.unmapped == []
    for row, (b, e) in zip(pm[:3], [(0, 6), (8, 21), (23, 26)]):
        cols = torch.nonzero(row).flatten().tolist()
        assert cols == list(range(tok.char_to_token(b), tok.char_to_token(e - 1) + 1))
        assert 0 not in cols  # <s> is column 0
    assert set(torch.nonzero(pm[3]).flatten().tolist()) >= set(torch.nonzero(pm[0]).flatten().tolist())
    assert label_to_token_indices(pm[:2]) == {1: torch.nonzero(pm[0]).flatten().tolist(),
                                              2: torch.nonzero(pm[1]).flatten().tolist()}


def test_whitespace_fallback_and_unmapped_spans_are_reported(tokenizer):
    caption = 'person. dog'
    tok = tokenizer(caption)
    # a span starting on the space before "dog" falls back to the next character (beg + 1)
    result = build_positive_map(tok, [[(7, 11)], [(40, 50)]], num_tokens=256)
    assert result.positive_map[0].sum() >= 1
    assert result.unmapped == [(1, (40, 50))] and result.positive_map[1].sum() == 0


def test_chunks_fit_and_cover_all_classes(tokenizer):
    names = [f'class number {i}' for i in range(100)]

    def count(caption):
        return len(tokenizer(caption)['input_ids'])

    chunks = chunk_class_names(names, count, max_tokens=64)
    assert [n for _, chunk in chunks for n in chunk] == names
    assert all(count(build_class_prompt(chunk)[0]) <= 64 for _, chunk in chunks)
    # greedy packing: adding the next class to a chunk would overflow
    for (_, chunk), (_, nxt) in zip(chunks, chunks[1:]):
        assert count(build_class_prompt(chunk + nxt[:1])[0]) > 64
    fixed = chunk_class_names(names, count, max_tokens=256, chunk_size=8)
    assert [(s, len(c)) for s, c in fixed] == [(s, 8) for s in range(0, 96, 8)] + [(96, 4)]
    with pytest.raises(ValueError, match='smaller chunked_size'):
        chunk_class_names(names, count, max_tokens=64, chunk_size=40)
