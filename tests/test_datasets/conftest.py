"""Fixtures for the dataset tests: a real byte-level BPE tokenizer trained in a temp dir, a small toy dataset,
helpers to build transform inputs and to capture MMLogger warnings."""
import logging
import random
from typing import Dict, List, Sequence

import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.logging import MMLogger

from fiber_mmdet.datasets.synthetic_shapes import generate_toy_dataset
from fiber_mmdet.utils import train_roberta_tokenizer

ADJECTIVES = ['red', 'green', 'blue', 'small', 'large', 'wooden', 'metal', 'plastic', 'striped', 'round', 'old',
              'new']
NOUNS = ['apple', 'chair', 'table', 'bottle', 'car', 'boat', 'lamp', 'cup', 'book', 'shoe']


def class_names(num: int) -> List[str]:
    """``num`` distinct two-word class names ("red apple", ...), at most 120."""
    names = [f'{adj} {noun}' for adj in ADJECTIVES for noun in NOUNS]
    assert num <= len(names)
    return names[:num]


def label_map(num: int) -> Dict[str, str]:
    return {str(i): name for i, name in enumerate(class_names(num))}


def od_results(names: Dict[str, str], labels: Sequence[int], img_shape=(480, 640)) -> dict:
    """A detection sample as ``ODVGDataset`` + ``LoadAnnotations`` produce it (one 10x10 box per label)."""
    boxes = np.array([[10 * i, 5, 10 * i + 10, 15] for i in range(len(labels))], dtype=np.float32).reshape(-1, 4)
    return dict(img_shape=img_shape, text=dict(names), gt_bboxes=HorizontalBoxes(boxes),
                gt_bboxes_labels=np.asarray(labels, dtype=np.int64),
                gt_ignore_flags=np.zeros(len(labels), dtype=bool))


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


@pytest.fixture(scope='session')
def tokenizer_dir(tmp_path_factory) -> str:
    names = class_names(120)
    texts = names + ['. '.join(names[i:] + names[:i]) for i in range(0, 120, 7)] + [
        ' background . background', 'a dog left of a cat. the small red triangle.']
    return train_roberta_tokenizer(texts, str(tmp_path_factory.mktemp('tokenizer')), vocab_size=600)


@pytest.fixture(scope='session')
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope='session')
def toy_dataset(tmp_path_factory):
    """(directory, meta) of a small toy dataset (seed 0) with its tokenizer."""
    out_dir = str(tmp_path_factory.mktemp('toy'))
    meta = generate_toy_dataset(out_dir, seed=0, num_train_od=60, num_train_od_attr=30, num_train_vg=40, num_val=20,
                                num_grounding=20, empty_fraction=0.1)
    return out_dir, meta


class _Collect(logging.Handler):

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def log_messages():
    """Messages sent to the current MMLogger while the test runs."""
    logger = MMLogger.get_current_instance()
    handler = _Collect()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)
