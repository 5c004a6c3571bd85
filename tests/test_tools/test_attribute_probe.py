"""tools/analysis_tools/attribute_probe.py: the ridge probe itself, and a run on the toy data layout."""
import json

import numpy as np
import pytest

from .conftest import REPO_ROOT, load_tool


def _tool():
    return load_tool('analysis_tools/attribute_probe.py')


def test_ridge_probe_reads_what_is_linear_and_only_that():
    probe = _tool().ridge_probe
    rng = np.random.default_rng(0)
    labels = [str(i % 5) for i in range(300)]
    centres = rng.normal(size=(5, 16)) * 4
    separable = np.stack([centres[int(label)] for label in labels]) + rng.normal(size=(300, 16))
    assert probe(separable, labels) == 1.0
    noise = rng.normal(size=(300, 16))
    assert probe(noise, labels) < 0.4  # chance is 0.2
    with pytest.raises(ValueError, match='too few'):
        probe(noise[:1], labels[:1])


def test_probe_runs_on_the_toy_layout(toy_root, toy_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(toy_root)  # the toy config's data_root is relative: data/toy_shapes/
    out = tmp_path / 'probe.json'
    result = _tool().main([str(REPO_ROOT / 'configs' / 'toy' / 'fiber_toy.py'), toy_checkpoint,
                           '--json', str(out)])
    printed = capsys.readouterr().out
    assert 'linear probes at the object centres' in printed and 'colour word' in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    probes, tokens = result['probes'], result['tokens']
    with open(toy_root / 'data' / 'toy_shapes' / 'annotations' / 'train_od.jsonl') as f:
        assert probes['num_objects'] == sum(len(json.loads(line)['detection']['instances']) for line in f)
    for level in ('backbone', 'fpn', 'head_tower'):
        assert 0 <= probes[level]['colour'] <= 1 and 0 <= probes[level]['shape'] <= 1
    assert tokens['num_phrases'] > 0 and set(tokens['skipped']) == {'no_twin', 'no_anchor'}
    for word in ('colour_word', 'shape_word'):
        assert 0 < tokens[word]['target'] < 1 and 0 < tokens[word]['twin'] < 1


def test_a_phrase_of_more_tokens_than_words_is_an_error(toy_root, toy_checkpoint, tmp_path, monkeypatch):
    """The colour and shape words are read as a phrase's last two tokens: a word the toy tokenizer splits
    (here an unknown colour word) must stop the probe with the file named, not shift the columns silently."""
    import shutil
    root = tmp_path / 'copy'
    shutil.copytree(toy_root / 'data', root / 'data')
    grounding_file = root / 'data' / 'toy_shapes' / 'annotations' / 'grounding_val.json'
    grounding = json.loads(grounding_file.read_text())
    image = grounding['images'][0]
    (beg, end), = image['tokens_positive_eval'][0]
    colour = image['caption'][beg:end].split()[-2]
    image['caption'] = image['caption'].replace(colour, 'qzxvkj', 1)
    shift = len('qzxvkj') - len(colour)
    image['tokens_positive_eval'] = [[[b, e + shift]] if i == 0 else [[b + shift, e + shift]]
                                     for i, ((b, e), ) in enumerate(image['tokens_positive_eval'])]
    grounding['images'] = [image]
    grounding_file.write_text(json.dumps(grounding))
    monkeypatch.chdir(root)
    with pytest.raises(ValueError, match=rf"{image['file_name']}: phrase .*qzxvkj.* tokens for"):
        _tool().main([str(REPO_ROOT / 'configs' / 'toy' / 'fiber_toy.py'), toy_checkpoint])
