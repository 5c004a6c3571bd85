"""PerSampleVisualizationHook under two ranks writing into one folder: one picture per sample, named by its
position in the test set, none overwritten, the sampler's padded repeat not drawn again.

The test set has 5 samples on 3 image files, two samples per file as Flickr30k's sentences of one image (COCO
json entries with the same ``file_name``). DefaultSampler gives rank 0 samples 0, 2, 4 and rank 1 samples 1, 3 and
0 again (padding)."""
import json
import os

import cv2
import numpy as np
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import InstanceData

from .dist_helpers import run_on_ranks

FILES = ['a.jpg', 'a.jpg', 'b.jpg', 'b.jpg', 'c.jpg']


class FixedBoxDetector(BaseModel):
    """Predicts one box per image."""

    def __init__(self) -> None:
        super().__init__()
        self.score = torch.nn.Parameter(torch.tensor([0.9]))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        for sample in data_samples:
            sample.pred_instances = InstanceData(bboxes=torch.tensor([[2.0, 2.0, 20.0, 20.0]]),
                                                 scores=self.score.detach(), labels=torch.tensor([0]))
        return data_samples


def _write_data(root) -> None:
    os.makedirs(root / 'images')
    for i, name in enumerate(sorted(set(FILES))):
        cv2.imwrite(str(root / 'images' / name), np.full((32, 48, 3), 60 * i, np.uint8))
    images = [dict(id=i + 1, file_name=name, width=48, height=32) for i, name in enumerate(FILES)]
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=[], categories=[dict(id=1, name='thing')]), f)


def _test_rank(rank, world_size, root):
    runner = Runner(
        model=FixedBoxDetector(), work_dir=str(root / 'work'), default_scope='mmdet',
        test_dataloader=dict(
            batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='CocoDataset', data_root=str(root), ann_file='ann.json', data_prefix=dict(img='images/'),
                         metainfo=dict(classes=('thing', )), test_mode=True,
                         pipeline=[dict(type='LoadImageFromFile'), dict(type='PackDetInputs')])),
        test_evaluator=dict(type='DumpDetResults', out_file_path=str(root / 'predictions.pkl')),
        test_cfg=dict(type='TestLoop'),
        default_hooks=dict(visualization=dict(type='PerSampleVisualizationHook', draw=True, test_out_dir='show')),
        # a new name: MMEngine reuses a visualizer of the same name (one of this process's earlier tests), and the
        # hook draws with the latest one created
        visualizer=dict(type='DetLocalVisualizer', name=f'per_sample_{os.getpid()}'))
    runner.test()
    return runner.timestamp


def test_two_ranks_write_one_picture_per_sample(tmp_path):
    _write_data(tmp_path)
    timestamps = run_on_ranks(_test_rank, 2, (tmp_path, ), timeout=120)
    assert timestamps[0] == timestamps[1]  # one folder for both ranks
    pictures = sorted(os.listdir(tmp_path / 'work' / timestamps[0] / 'show'))
    assert pictures == ['000001_a.jpg', '000002_a.jpg', '000003_b.jpg', '000004_b.jpg', '000005_c.jpg']
