"""MMEngine's early stopping with its state kept in checkpoints, so a resumed run stops where the original would."""
from mmengine.hooks import EarlyStoppingHook

from mmdet.registry import HOOKS

_META_KEY = 'early_stopping'


@HOOKS.register_module()
class ResumableEarlyStoppingHook(EarlyStoppingHook):
    """:class:`mmengine.hooks.EarlyStoppingHook` (same arguments) whose best score and count of validations
    without improvement are saved in each checkpoint's ``meta`` and restored on resume.

    MMEngine's hook keeps them in memory only: a run resumed after a pre-emption would start counting its
    patience from zero and stop later than the uninterrupted run.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[_META_KEY] = dict(
            monitor=self.monitor, best_score=float(self.best_score), wait_count=int(self.wait_count))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('meta', {}).get(_META_KEY)
        if state is None:
            return
        if state['monitor'] != self.monitor:
            runner.logger.warning(f'early stopping state of the checkpoint monitors {state["monitor"]!r}, this run '
                                  f'{self.monitor!r}: not restored')
            return
        self.best_score, self.wait_count = state['best_score'], state['wait_count']
        runner.logger.info(f'early stopping resumed: best {self.monitor} {self.best_score:.4f}, '
                           f'{self.wait_count} validation(s) without improvement of {self.patience}')
