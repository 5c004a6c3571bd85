"""An epoch-based training loop that resumes in the middle of an epoch (after a pre-emption checkpoint)."""
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from mmdet.registry import LOOPS


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """:class:`mmengine.runner.EpochBasedTrainLoop` (same arguments) that continues an epoch where it stopped.

    MMEngine's loop starts every epoch from its first batch, so a checkpoint saved in the middle of epoch ``e``
    after ``i`` iterations in all (``PreemptionHook``) would train the epoch's first batches twice. Here the
    resumed epoch draws the same batches (the sampler is seeded by the epoch) and skips the
    ``i - e * len(dataloader)`` already trained, as MMEngine's ``IterBasedTrainLoop`` does: they are loaded,
    not trained. Batch indices, logs and hooks see the epoch's real positions.
    """

    def run_epoch(self) -> None:
        done = self._iter - self._epoch * len(self.dataloader)  # batches of this epoch already trained
        if done <= 0:
            return super().run_epoch()
        print_log(f'epoch {self._epoch + 1}: skipping its first {done} batches, trained before the checkpoint '
                  f'this run resumed from (iteration {self._iter})', logger='current')
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        for idx, data_batch in enumerate(self.dataloader):
            if idx >= done:
                self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
