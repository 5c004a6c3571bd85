"""``tools/test.py --show-dir`` for grounding benchmarks: one picture per sample, not per image file."""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import mmcv
from mmengine.dist import gather_object, get_dist_info, is_main_process
from mmengine.fileio import get
from mmengine.runner import Runner
from mmengine.utils import mkdir_or_exist

from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS
from mmdet.structures import DetDataSample
from ..dist import RankSample, rank_sample_indices


@HOOKS.register_module()
class PerSampleVisualizationHook(DetVisualizationHook):
    """mmdet's ``DetVisualizationHook`` whose test pictures are named ``<sample number>_<image file>``, with every
    rank's samples drawn.

    mmdet names a test picture after its image file alone, so the five sentences of one Flickr30k image, the
    expressions of one RefCOCO image, or two datasets of a concatenated test set with the same file names overwrite
    each other and only the last survives. Here the number is the sample's position in the test set (1-based),
    the same under any number of ranks: each rank reads its samples' dataset indices from MMEngine's
    ``DefaultSampler`` (with another sampler: the rank's own count, prefixed ``r<rank>-`` under several ranks).

    Under several ranks, mmdet's visualizers draw on rank 0 only (``add_datasample`` is ``master_only``), so
    ``DetVisualizationHook`` leaves out every sample of the other ranks. Here each test iteration's samples are
    gathered on rank 0 (every rank runs as many iterations: the sampler pads the last round) and drawn there; the
    padded repeats are not drawn again (counted in the log). Same arguments as ``DetVisualizationHook``; the
    pictures are drawn by the configured visualizer (``GroundingLocalVisualizer``: ground truth | predictions,
    named by phrase). (mmdet's own ``GroundingVisualizationHook`` draws captions under the boxes but also names
    pictures by file.)
    """

    _samples: Optional[List[RankSample]] = None
    _position = 0  # samples of the current test run this rank has seen
    _repeats = 0

    def before_test_epoch(self, runner: Runner) -> None:
        self._samples = rank_sample_indices(runner.test_loop.dataloader)
        self._position = 0
        self._repeats = 0

    def after_test_iter(self, runner: Runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[DetDataSample]) -> None:
        if self.draw is False:
            return
        local: List[Tuple[str, DetDataSample]] = []
        for data_sample in outputs:
            number = self._sample_number()
            if number is not None:
                local.append((number, data_sample.cpu()))
        gathered = gather_object(local)  # [local] without distributed; None on the other ranks
        if not is_main_process():
            return
        out_dir = None
        if self.test_out_dir is not None:
            out_dir = osp.join(runner.work_dir, runner.timestamp, self.test_out_dir)
            mkdir_or_exist(out_dir)
        for number, data_sample in sorted((s for part in gathered for s in part), key=lambda s: s[0]):
            self._test_index += 1
            img = mmcv.imfrombytes(get(data_sample.img_path, backend_args=self.backend_args), channel_order='rgb')
            name = f'{number}_{osp.basename(data_sample.img_path)}'
            self._visualizer.add_datasample(
                name if self.show else 'test_img', img, data_sample=data_sample, show=self.show,
                wait_time=self.wait_time, pred_score_thr=self.score_thr,
                out_file=osp.join(out_dir, name) if out_dir else None, step=self._test_index)

    def after_test_epoch(self, runner: Runner, metrics: Optional[dict] = None) -> None:
        if self.draw is False:
            return
        repeats = gather_object(self._repeats)  # the repeats are on the last ranks
        if is_main_process() and sum(repeats):
            runner.logger.info(f'PerSampleVisualizationHook: {sum(repeats)} padded repeat(s) of the distributed '
                               'sampler were not drawn again')

    def _sample_number(self) -> Optional[str]:
        """The next sample's number for its picture name, None for a padded repeat."""
        position = self._position
        self._position += 1
        if self._samples is not None and position < len(self._samples):
            sample = self._samples[position]
            if sample.padding:
                self._repeats += 1
                return None
            return f'{sample.index + 1:06d}'
        rank, world_size = get_dist_info()
        return f'r{rank}-{position + 1:06d}' if world_size > 1 else f'{position + 1:06d}'
