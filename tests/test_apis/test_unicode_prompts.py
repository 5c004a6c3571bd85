"""Class names, captions and phrases in any script: names come back as typed, spans are character offsets into
the text as written, and every token of a character is in the positive map (the test tokenizer is a byte-level
BPE trained on English: 'é', '猫' and '🐱' are each split into 2 to 4 byte tokens)."""
import json
import os.path as osp

import numpy as np
import pytest
from transformers import AutoTokenizer

from fiber_mmdet.apis import FIBERInferencer
from fiber_mmdet.utils import build_class_prompt, build_positive_map
from fiber_mmdet.utils.grounding_prompts import find_phrase, resolve_phrases
from ..conftest import TOY_CONFIG, val_images

NAMES = ['café', '猫', '🐱', 'naïve dog', 'cafe\u0301']  # the last in decomposed form (e + combining accent)


@pytest.fixture(scope='module')
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def tokens_over(offsets, beg: int, end: int) -> list:
    """The tokens from the first to the last whose character offsets overlap ``[beg, end)`` (a space inside a
    name is a token of its own with empty offsets, inside the range)."""
    over = [t for t, (b, e) in enumerate(offsets) if e > b and b < end and e > beg]
    return list(range(over[0], over[-1] + 1))


def test_a_character_split_into_byte_tokens_is_covered_whole(tokenizer):
    caption, spans = build_class_prompt(NAMES)
    encoded = tokenizer(caption, return_offsets_mapping=True)
    offsets = encoded['offset_mapping']
    assert len(tokens_over(offsets, *spans[1][0])) == 3  # '猫' is three byte tokens
    result = build_positive_map(encoded, spans, num_tokens=64)
    assert result.unmapped == []
    for name, ((beg, end),), row in zip(NAMES, spans, result.positive_map):
        assert caption[beg:end] == name  # offsets are characters of the caption as written
        assert row.nonzero().flatten().tolist() == tokens_over(offsets, beg, end), name
    # the same columns from a tokenizers.Encoding (what a runtime without transformers holds)
    from fiber_mmdet.utils.token_spans import span_token_columns
    columns = span_token_columns(tokenizer.backend_tokenizer.encode(caption), spans, 64).columns
    assert columns == [row.nonzero().flatten().tolist() for row in result.positive_map]


def test_phrase_search_keeps_offsets_into_the_caption_as_written():
    # 'İ'.lower() is two characters: a search in the lowered caption was one character off after it
    assert find_phrase('İstanbul cat', 'CAT') == (9, 12)
    caption = 'un 猫 à côté d’un 🐶'
    spans = resolve_phrases(caption, ['猫', 'CÔTÉ', '🐶'])
    assert [caption[b:e] for (b, e), in spans] == ['猫', 'côté', '🐶']


@pytest.fixture
def inferencer(toy_dir, toy_checkpoint):
    return FIBERInferencer(model=TOY_CONFIG, weights=toy_checkpoint, device='cpu', show_progress=False)


def test_class_names_in_any_script_come_back_as_typed(inferencer, toy_dir):
    image = val_images(toy_dir)[0]
    pred = inferencer(image, texts=' . '.join(NAMES), custom_entities=True)['predictions'][0]
    assert len(pred['labels']) > 0
    assert all(NAMES[label] == name for label, name in zip(pred['labels'], pred['label_names']))
    prompt, = inferencer.model.test_prompts(_sample(text=' . '.join(NAMES), custom_entities=True))
    assert prompt.entities == NAMES
    tokenizer = inferencer.model.language_model.tokenizer
    offsets = tokenizer(prompt.caption, return_offsets_mapping=True)['offset_mapping']
    for label, name in enumerate(NAMES, start=1):
        beg = prompt.caption.index(name)
        assert prompt.label_to_tokens[label] == tokens_over(offsets, beg, beg + len(name)), name


def test_phrases_in_any_script_are_saved_with_spans_into_the_caption(inferencer, toy_dir, tmp_path):
    image = val_images(toy_dir)[1]
    caption = 'un 猫 à côté d’un 🐶'
    out = inferencer(image, texts=caption, tokens_positive=['猫', '🐶'], out_dir=str(tmp_path),
                     no_save_pred=False)['predictions'][0]
    assert out['text'] == caption
    assert out['tokens_positive'] == [[[3, 4]], [[17, 18]]]
    assert [caption[b:e] for [[b, e]] in out['tokens_positive']] == ['猫', '🐶']
    assert set(out['label_names']) <= {'猫', '🐶'} and len(out['label_names']) > 0
    path = tmp_path / 'preds' / (osp.splitext(osp.basename(image))[0] + '.json')
    raw = path.read_text(encoding='utf-8')
    assert '猫' in raw and '🐶' in raw  # UTF-8, not \u escapes
    assert json.loads(raw) == out


def test_an_expression_in_decomposed_form_is_its_own_label_name(inferencer, toy_dir):
    text = 'le cafe\u0301 bleu'
    pred = inferencer(np.zeros((40, 60, 3), np.uint8), texts=text, tokens_positive=-1)['predictions'][0]
    assert set(pred['label_names']) == {text}
    assert pred['tokens_positive'] == [[[0, len(text)]]]


def _sample(**fields):
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    sample.set_metainfo(fields)
    return sample
