"""Evaluation loops read images with the decoder of training and inference: a transparent PNG is evaluated as
the same picture on white (mmcv's loader, which the test pipelines name, would drop the alpha channel)."""
import copy

import numpy as np
from mmengine.dataset import Compose
from mmengine.evaluator import BaseMetric
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import Dataset

from mmdet.registry import METRICS


class TwoImages(Dataset):
    """Two image files through the toy test pipeline with one class prompt."""

    def __init__(self, toy_cfg, paths) -> None:
        self.pipeline = Compose(copy.deepcopy(toy_cfg.test_dataloader.dataset.pipeline))
        self.paths = paths
        self.metainfo = dict(classes=('circle', 'square'))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        return self.pipeline(dict(img_path=self.paths[i], img_id=i, text='circle . square', custom_entities=True))


@METRICS.register_module(force=True)
class KeepBoxesMetric(BaseMetric):
    """Every sample's boxes and scores, in order."""

    def process(self, data_batch, data_samples) -> None:
        self.results.extend((np.asarray(s['pred_instances']['bboxes']), np.asarray(s['pred_instances']['scores']))
                            for s in data_samples)

    def compute_metrics(self, results) -> dict:
        KeepBoxesMetric.last = results
        return dict(samples=len(results))


def test_transparent_image_is_evaluated_as_shown(tmp_path, toy_cfg, toy_root, toy_checkpoint):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    alpha = np.full((120, 160), 255, np.uint8)
    alpha[:, :60] = 0  # a transparent band over black pixels
    rgb[:, :60] = 0
    Image.fromarray(np.dstack([rgb, alpha]), 'RGBA').save(tmp_path / 'transparent.png')
    shown = rgb.copy()
    shown[:, :60] = 255  # what a viewer shows: the band on white
    Image.fromarray(shown).save(tmp_path / 'on_white.png')
    model = copy.deepcopy(toy_cfg.model)
    model.test_cfg.score_thr = 0.0
    runner = Runner(
        model=model, load_from=toy_checkpoint, work_dir=str(tmp_path), default_scope='mmdet',
        test_dataloader=dict(dataset=TwoImages(toy_cfg, [str(tmp_path / 'transparent.png'),
                                                         str(tmp_path / 'on_white.png')]),
                             sampler=dict(type='DefaultSampler', shuffle=False), batch_size=1, num_workers=0,
                             collate_fn=dict(type='pseudo_collate')),
        test_cfg=dict(type='ContainBadSamplesTestLoop', on_bad_sample='raise'),
        test_evaluator=dict(type='KeepBoxesMetric'))
    assert runner.test()['samples'] == 2
    (boxes_a, scores_a), (boxes_b, scores_b) = KeepBoxesMetric.last
    assert len(scores_a) > 0
    np.testing.assert_array_equal(boxes_a, boxes_b)
    np.testing.assert_array_equal(scores_a, scores_b)
