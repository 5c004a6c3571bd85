"""FIBER through MMDetection's ``DetInferencer`` and our ``FIBERInferencer``, on the toy config (untrained)."""
import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from fiber_mmdet.apis import FIBERInferencer, ImageLoadError
from fiber_mmdet.utils import PromptError
from ..conftest import TOY_CONFIG, grounding_records, image_size, val_images


@pytest.fixture
def inferencer(toy_dir, toy_checkpoint):
    return FIBERInferencer(model=TOY_CONFIG, weights=toy_checkpoint, device='cpu', show_progress=False)


def _single(inferencer, image, **kwargs) -> dict:
    return inferencer(image, **kwargs)['predictions'][0]


def test_mmdet_det_inferencer_runs_fiber_with_class_names(toy_dir, toy_checkpoint):
    """MMDetection's own inferencer, unchanged: class names as mmdet's demo passes them."""
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=TOY_CONFIG, weights=toy_checkpoint, device='cpu', show_progress=False)
    image = val_images(toy_dir)[0]
    out = inferencer(image, texts='circle . square . cross .', custom_entities=True, return_datasamples=True)
    pred = out['predictions'][0].pred_instances
    assert len(pred) > 0
    assert set(pred.labels.tolist()) <= {0, 1, 2}
    assert pred.label_names == [('circle', 'square', 'cross')[int(l)] for l in pred.labels]
    width, height = image_size(image)  # boxes in the input image's pixels, not the resized network input
    assert float(pred.bboxes[:, 2].max()) <= width + 1e-3 and float(pred.bboxes[:, 3].max()) <= height + 1e-3
    assert float(pred.bboxes[:, 2].max()) > 0.5 * width  # ... and not in a smaller frame


def test_class_names_string_is_split_and_stripped(inferencer, toy_dir):
    pred = _single(inferencer, val_images(toy_dir)[0], texts=' circle .square. . cross ', custom_entities=True)
    assert set(pred['label_names']) <= {'circle', 'square', 'cross'}  # no 'circle ' with mmdet's trailing space
    assert len(pred['label_names']) == len(pred['bboxes']) == len(pred['scores']) == len(pred['labels']) > 0
    assert all(('circle', 'square', 'cross')[l] == n for l, n in zip(pred['labels'], pred['label_names']))


def test_dataset_class_list_is_chunked_not_truncated(inferencer, toy_dir):
    """'$: coco': 80 names do not fit the toy model's 64 tokens; every name is still predictable."""
    from mmdet.evaluation import get_classes
    coco = get_classes('coco')
    model = inferencer.model
    prompts = model.test_prompts(_sample_with(text=tuple(coco)))
    assert len(prompts) > 1
    assert [n for p in prompts for n in p.entities] == list(coco)
    assert sorted(p.label_offset for p in prompts) == [p.label_offset for p in prompts]
    pred = _single(inferencer, val_images(toy_dir)[0], texts='$: coco')
    assert set(pred['label_names']) <= set(coco)
    assert all(coco[l] == n for l, n in zip(pred['labels'], pred['label_names']))
    with pytest.raises(PromptError, match='unknown dataset'):
        inferencer(val_images(toy_dir)[0], texts='$: nonsense')


def _sample_with(**fields):
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    sample.set_metainfo(fields)
    return sample


def test_phrases_as_strings_equal_phrases_as_spans(inferencer, toy_dir):
    record = grounding_records(toy_dir)[0]
    image = osp.join(str(toy_dir), 'data', 'toy_shapes', 'images', 'grounding', record['file_name'])
    caption, spans = record['caption'], record['tokens_positive_eval']
    phrases = [caption[s[0][0]:s[0][1]] for s in spans]
    by_span = _single(inferencer, image, texts=caption, tokens_positive=spans)
    by_text = _single(inferencer, image, texts=caption, tokens_positive=phrases)
    assert by_text == by_span
    assert set(by_text['label_names']) <= set(phrases)
    assert all(phrases[l] == n for l, n in zip(by_text['labels'], by_text['label_names']))


def test_referring_expression_is_one_label(inferencer, toy_dir):
    text = 'the large red square'
    pred = _single(inferencer, val_images(toy_dir)[0], texts=text, tokens_positive=-1)
    assert set(pred['labels']) == {0} and set(pred['label_names']) == {text}
    assert pred['scores'] == sorted(pred['scores'], reverse=True)  # the first box is the answer
    assert len(pred['scores']) > 1
    image = val_images(toy_dir)[0]
    answer = inferencer(image, texts=text, tokens_positive=-1, return_vis=True, pred_score_thr=0.0)
    classes = inferencer(image, texts='circle', custom_entities=True, return_vis=True, pred_score_thr=0.0)
    from PIL import Image
    original = np.asarray(Image.open(image).convert('RGB'))
    changed = lambda vis: (vis != original).any(axis=2).mean()  # noqa: E731
    # only the answer is drawn: far fewer pixels change than with every candidate of a class prompt
    assert 0 < changed(answer['visualization'][0]) < 0.5 * changed(classes['visualization'][0])


@pytest.mark.parametrize('texts, kwargs, message', [
    ('', dict(custom_entities=True), 'names no class'),
    (' . .. ', dict(custom_entities=True), 'names no class'),
    ('a red circle', dict(), 'without the phrases to ground'),
    ('a red circle', dict(tokens_positive=['blue square']), "'blue square' is not in the caption"),
    ('a red circle', dict(tokens_positive=[[[14, 2]]]), r'\[14, 2\] is reversed'),
    ('a red circle', dict(tokens_positive=[[[2, 40]]]), 'outside the caption of 12 characters'),
    ('a red circle', dict(tokens_positive=[]), 'no phrase to ground'),
    ('   ', dict(tokens_positive=-1), 'expression is empty'),
    (' '.join(['the small red circle'] * 30), dict(tokens_positive=-1), 'reads at most 64'),
    (None, dict(), 'needs a text prompt'),
])
def test_bad_prompts_are_clear_errors_naming_the_image(inferencer, toy_dir, texts, kwargs, message):
    image = val_images(toy_dir)[0]
    with pytest.raises(PromptError, match=message) as error:
        inferencer(image, texts=texts, **kwargs)
    if texts is not None:
        assert osp.basename(image) in str(error.value)


def test_unreadable_images_are_errors_naming_the_file(inferencer, toy_dir, tmp_path):
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    truncated = tmp_path / 'truncated.png'
    truncated.write_bytes(open(val_images(toy_dir)[0], 'rb').read()[:200])
    for bad in (empty, truncated):
        with pytest.raises(ImageLoadError, match=str(bad)):
            inferencer(str(bad), texts='circle', custom_entities=True)
    with pytest.raises((ImageLoadError, FileNotFoundError), match='missing.png'):
        inferencer(str(tmp_path / 'missing.png'), texts='circle', custom_entities=True)


def test_results_are_saved_with_label_names(inferencer, toy_dir, tmp_path):
    image = val_images(toy_dir)[1]
    out = inferencer(image, texts='circle . cross', custom_entities=True, out_dir=str(tmp_path),
                     no_save_pred=False, pred_score_thr=0.0, return_vis=True)
    stem = osp.splitext(osp.basename(image))[0]
    with open(tmp_path / 'preds' / f'{stem}.json') as f:
        saved = json.load(f)
    assert saved == out['predictions'][0]
    assert len(saved['label_names']) == len(saved['bboxes']) > 0
    picture = out['visualization'][0]
    width, height = image_size(image)
    assert picture.shape == (height, width, 3)
    assert osp.isfile(tmp_path / 'vis' / osp.basename(image))
    from PIL import Image
    original = np.asarray(Image.open(image).convert('RGB'))
    assert (picture != original).any(axis=2).mean() > 0.01  # boxes and names were drawn


def test_inferencer_equals_tools_test(toy_dir, toy_checkpoint, inferencer, tmp_path):
    """The same image and prompt give the same detections through tools/test.py and the inferencer (mmdet's
    GLIP loses AP in the inferencer, issue open-mmlab/mmdetection#12276). Also draws --show-dir pictures."""
    from ..test_tools.conftest import TOOLS, run_tool
    out = str(tmp_path / 'preds.pkl')
    run_tool([str(TOOLS / 'test.py'), TOY_CONFIG, toy_checkpoint, '--work-dir', str(tmp_path / 'work'), '--out', out,
              '--show-dir', 'painted'], cwd=str(toy_dir))
    with open(out, 'rb') as f:
        results = pickle.load(f)
    detection = [r for r in results if isinstance(r.get('text'), (list, tuple))]
    grounding = [r for r in results if isinstance(r.get('text'), str)]
    assert len(detection) == 4 and len(grounding) >= 3
    for result in (detection[0], grounding[0]):
        if isinstance(result['text'], str):
            kwargs = dict(texts=result['text'], tokens_positive=result['tokens_positive'])
        else:
            kwargs = dict(texts=[tuple(result['text'])], custom_entities=True)
        pred = inferencer(result['img_path'], **kwargs, return_datasamples=True)['predictions'][0].pred_instances
        expected = result['pred_instances']
        assert pred.labels.tolist() == expected['labels'].tolist()
        torch.testing.assert_close(pred.bboxes, expected['bboxes'], atol=1e-4, rtol=0)
        torch.testing.assert_close(pred.scores, expected['scores'], atol=1e-6, rtol=0)
    # --show-dir: one picture per sample (5 sentences of one image no longer overwrite each other), GT | prediction
    import glob
    painted = glob.glob(str(tmp_path / 'work' / '*' / 'painted' / '*.png'))
    assert len(painted) == len(results)
    from PIL import Image
    first = sorted(painted)[0]
    width, height = image_size(detection[0]['img_path'])
    assert Image.open(first).size == (2 * width, height)


def test_init_detector_and_inference_detector(toy_dir, toy_checkpoint, inferencer):
    """mmdet's functional API: same model, same detections as the inferencer."""
    from mmdet.apis import inference_detector, init_detector
    model = init_detector(TOY_CONFIG, toy_checkpoint, device='cpu')
    image = val_images(toy_dir)[2]
    result = inference_detector(model, image, text_prompt='circle . diamond', custom_entities=True)
    expected = inferencer(image, texts='circle . diamond', custom_entities=True,
                          return_datasamples=True)['predictions'][0].pred_instances
    assert result.pred_instances.label_names == expected.label_names
    torch.testing.assert_close(result.pred_instances.bboxes, expected.bboxes, atol=1e-4, rtol=0)


def test_pictures_show_the_answers():
    """A caption's picture shows each phrase's top box, an expression's its top box, a class list every box; with
    one_label_per_box the best of boxes overlapping by IoU >= 0.7 (the classes' NMS is per class)."""
    from mmengine.structures import InstanceData

    from mmdet.structures import DetDataSample

    from fiber_mmdet.apis.inferencer import drawn_answers
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=torch.float32)
    scores, labels = torch.tensor([0.5, 0.9, 0.7, 0.6]), torch.tensor([0, 1, 0, 1])

    def shown(tokens_positive, one_label_per_box=False):
        sample = DetDataSample(pred_instances=InstanceData(bboxes=boxes, scores=scores, labels=labels))
        if tokens_positive is not None:
            sample.tokens_positive = tokens_positive
        return sorted(drawn_answers(sample, one_label_per_box).pred_instances.scores.tolist())

    assert shown([[[0, 3]], [[4, 8]]]) == pytest.approx([0.7, 0.9])  # phrase 0: 0.7, phrase 1: 0.9
    assert shown(-1) == pytest.approx([0.9])
    assert shown(None) == pytest.approx([0.5, 0.6, 0.7, 0.9])
    assert shown(None, one_label_per_box=True) == pytest.approx([0.6, 0.7, 0.9])  # 0.5 lies under 0.9
