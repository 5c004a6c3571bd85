"""``tools/test.py --show-dir`` for grounding benchmarks: one picture per sample, not per image file."""
import os.path as osp
from typing import Sequence

import mmcv
from mmengine.fileio import get
from mmengine.runner import Runner
from mmengine.utils import mkdir_or_exist

from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS
from mmdet.structures import DetDataSample


@HOOKS.register_module()
class PerSampleVisualizationHook(DetVisualizationHook):
    """mmdet's ``DetVisualizationHook`` whose test pictures are named ``<sample index>_<image file>``.

    mmdet names a test picture after its image file alone, so the five sentences of one Flickr30k image, the
    expressions of one RefCOCO image, or two datasets of a concatenated test set with the same file names overwrite
    each other and only the last survives. Same arguments as ``DetVisualizationHook``; the pictures are drawn by
    the configured visualizer (``GroundingLocalVisualizer``: ground truth | predictions, named by phrase).
    (mmdet's own ``GroundingVisualizationHook`` draws captions under the boxes but also names pictures by file.)
    """

    def after_test_iter(self, runner: Runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[DetDataSample]) -> None:
        if self.draw is False:
            return
        out_dir = None
        if self.test_out_dir is not None:
            out_dir = osp.join(runner.work_dir, runner.timestamp, self.test_out_dir)
            mkdir_or_exist(out_dir)
        for data_sample in outputs:
            self._test_index += 1
            img = mmcv.imfrombytes(get(data_sample.img_path, backend_args=self.backend_args), channel_order='rgb')
            name = f'{self._test_index:06d}_{osp.basename(data_sample.img_path)}'
            self._visualizer.add_datasample(
                name if self.show else 'test_img', img, data_sample=data_sample, show=self.show,
                wait_time=self.wait_time, pred_score_thr=self.score_thr,
                out_file=osp.join(out_dir, name) if out_dir else None, step=self._test_index)
