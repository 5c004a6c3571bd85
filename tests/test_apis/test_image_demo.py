"""demo/image_demo.py as a user runs it: a folder with a broken image, each text form, an empty result."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from ..conftest import REPO_ROOT, TOY_CONFIG, grounding_records, val_images

DEMO = os.path.join(REPO_ROOT, 'demo', 'image_demo.py')


def _demo(args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, DEMO, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300)


@pytest.fixture(scope='module')
def folder_run(toy_root, toy_checkpoint, tmp_path_factory):
    """Two toy images and a zero-byte one in a folder, class names, an impossible threshold for the message."""
    folder = tmp_path_factory.mktemp('images')
    for image in val_images(toy_root)[:2]:
        shutil.copy(image, folder)
    (folder / 'broken.png').write_bytes(b'')
    out = tmp_path_factory.mktemp('out')
    result = _demo([str(folder), TOY_CONFIG, '--weights', toy_checkpoint, '--texts', 'circle . square . cross', '-c',
                    '--pred-score-thr', '1.01', '--out-dir', str(out)], cwd=str(toy_root))
    return folder, out, result


def test_folder_run_goes_on_past_a_broken_image_and_names_it(folder_run):
    folder, out, result = folder_run
    assert result.returncode == 1, result.stderr[-3000:]
    assert f'skipped: {folder / "broken.png"}' in result.stderr
    assert '1 image(s) failed' in result.stderr and str(folder / 'broken.png') in result.stderr.split('failed:')[1]
    assert '2 image(s) done' in result.stdout
    for name in sorted(os.listdir(folder)):
        if name == 'broken.png':
            continue
        assert osp.isfile(out / 'vis' / name)
        with open(out / 'preds' / (osp.splitext(name)[0] + '.json')) as f:
            pred = json.load(f)
        assert len(pred['bboxes']) == len(pred['label_names']) > 0
        assert set(pred['label_names']) <= {'circle', 'square', 'cross'}


def test_threshold_that_leaves_nothing_says_so(folder_run):
    _, _, result = folder_run
    assert result.stdout.count('no detection with score >= 1.01 (best 0.') == 2
    assert 'lower --pred-score-thr' in result.stdout


def test_phrases_on_a_toy_sentence_and_a_bad_phrase(toy_root, toy_checkpoint, tmp_path):
    record = grounding_records(toy_root)[0]
    image = osp.join(str(toy_root), 'data', 'toy_shapes', 'images', 'grounding', record['file_name'])
    caption = record['caption']
    phrases = [caption[s[0][0]:s[0][1]] for s in record['tokens_positive_eval']]
    result = _demo([image, TOY_CONFIG, '--weights', toy_checkpoint, '--texts', caption, '--phrases', *phrases,
                    '--pred-score-thr', '0', '--out-dir', str(tmp_path)], cwd=str(toy_root))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / 'preds' / (osp.splitext(record['file_name'])[0] + '.json')) as f:
        pred = json.load(f)
    assert set(pred['label_names']) <= set(phrases) and pred['label_names']
    bad = _demo([image, TOY_CONFIG, '--weights', toy_checkpoint, '--texts', caption, '--phrases', 'a pink elephant',
                 '--out-dir', str(tmp_path)], cwd=str(toy_root))
    assert bad.returncode == 2
    assert "phrase 'a pink elephant' is not in the caption" in bad.stderr
    assert 'Traceback' not in bad.stderr
