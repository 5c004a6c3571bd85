"""ClassNamesToCaption (COCO / ODinW fine-tuning captions) and ODToGroundingCaption on a class list (LVIS)."""
import random

import numpy as np
import pytest

from fiber_mmdet.datasets.transforms import ClassNamesToCaption, ODToGroundingCaption
from fiber_mmdet.utils import build_class_prompt
from .conftest import class_names, seed_all

NAMES = ('traffic_light', 'person', 'bow_(weapon)', 'dog')


def sample(labels, names=NAMES, **extra):
    return dict(text=names, gt_bboxes_labels=np.asarray(labels, dtype=np.int64), img_path='x.jpg', **extra)


def test_shuffled_caption_names_every_class_at_its_span():
    random.seed(0)
    orders = set()
    for _ in range(20):
        out = ClassNamesToCaption(shuffle=True).transform(sample([0, 3]))
        caption, spans = out['text'], out['tokens_positive']
        assert sorted(spans) == [0, 1, 2, 3]
        # cleaned names, each at its span, joined by '. ' without a trailing separator
        assert [caption[b:e] for (b, e), in (spans[i] for i in range(4))] == ['traffic light', 'person', 'bow ',
                                                                              'dog']
        assert caption.count('. ') == 3 and not caption.endswith('. ')
        orders.add(tuple(sorted(range(4), key=lambda i: spans[i][0][0])))
    assert len(orders) > 5  # a new order per sample


def test_unshuffled_caption_is_the_detectors_own():
    out = ClassNamesToCaption(shuffle=False).transform(sample([1]))
    caption, spans = build_class_prompt(NAMES, clean=True)
    assert out['text'] == caption and [out['tokens_positive'][i] for i in range(4)] == [[list(s)] for s, in spans]


def test_caption_prompt_forbids_shuffling_and_labels_are_checked():
    prompt = {'dog': dict(prefix='a ', suffix=' on a leash')}
    with pytest.raises(ValueError, match='caption prompt fixes the class order'):
        ClassNamesToCaption(shuffle=True).transform(sample([0], caption_prompt=prompt))
    out = ClassNamesToCaption(shuffle=False).transform(sample([3], caption_prompt=prompt))
    assert out['text'].endswith('a dog on a leash')
    (b, e), = out['tokens_positive'][3]
    assert out['text'][b:e] == 'dog'
    with pytest.raises(ValueError, match='outside the 4 classes'):
        ClassNamesToCaption(shuffle=False).transform(sample([4]))
    with pytest.raises(ValueError, match='needs the class names'):
        ClassNamesToCaption().transform(dict(text='a caption', gt_bboxes_labels=np.zeros(0, np.int64)))


def test_lvis_caption_draws_every_negative_from_the_class_list(tokenizer_dir):
    """LVIS fine-tuning: control (0, 0, 1, 0) = always min(85, #classes) negatives, no background entry."""
    from mmdet.structures.bbox import HorizontalBoxes
    names = tuple(class_names(30))
    transform = ODToGroundingCaption(tokenizer_name=tokenizer_dir, num_sample_negative=85,
                                     control_prob=(0.0, 0.0, 1.0, 0.0), background_name=None)
    seed_all(0)
    for _ in range(5):
        results = dict(text=names, gt_bboxes=HorizontalBoxes(np.array([[0, 0, 5, 5], [5, 5, 9, 9]], np.float32)),
                       gt_bboxes_labels=np.array([4, 17]), gt_ignore_flags=np.zeros(2, bool), img_shape=(20, 20))
        out = transform.transform(results)
        written = out['text'].split('. ')
        assert sorted(written) == sorted(names)  # all 30 classes, each once, and no "background"
        for label, name in zip(out['gt_bboxes_labels'], (names[4], names[17])):
            (b, e), = out['tokens_positive'][int(label)]
            assert out['text'][b:e] == name
