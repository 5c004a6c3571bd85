"""A checkpoint hook that never leaves a partial checkpoint and never removes the last good one first."""
import os.path as osp
from typing import Dict, List, Optional

from mmengine.dist import is_main_process

from mmdet.registry import HOOKS
from ..checkpoint import CheckpointSaveError, atomic_write
from .best_on_tie_checkpoint_hook import BestOnTieCheckpointHook

# message-hub key of a checkpoint saved between epochs' checkpoints, removed after the next regular one
INTERIM_KEY = 'interim_ckpt'


@HOOKS.register_module()
class AtomicCheckpointHook(BestOnTieCheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` (same arguments, plus the ``'greater_equal'`` rule of
    :class:`BestOnTieCheckpointHook`) made safe against crashes, kills and full disks while saving.

    * Checkpoints in a local folder are written atomically (MMEngine file backend ``'local_atomic'``: temporary
      name, fsync, rename), the periodic ones as well as ``best_*.pth``; ``work_dir/last_checkpoint`` too.
    * ``max_keep_ckpts`` and ``save_best`` remove the checkpoint they replace only after the new one is on disk
      (MMEngine's hook removes it first, so a failed save with ``max_keep_ckpts=1`` left no checkpoint at all).
    * A failed save raises :class:`~fiber_mmdet.engine.checkpoint.CheckpointSaveError` naming the folder, the
      bytes needed and the bytes free; the previous checkpoint and ``last_checkpoint`` are unchanged.

    Remote folders (``s3://...``) or explicit ``backend_args`` / ``file_client_args`` keep their own backend.
    """

    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self.backend_args is None and self.file_client_args is None and '://' not in str(out_dir):
            self.backend_args = dict(backend='local_atomic')
        super().before_train(runner)

    def save_now(self, runner) -> str:
        """Save the state after the iterations done so far (``runner.iter``, validation included) and return its
        path; for stopping between iterations (:class:`PreemptionHook`).

        Iteration-based: ``iter_<n>.pth``, kept like the others (``max_keep_ckpts``). Epoch-based:
        ``iter_<n>.pth`` beside the ``epoch_<e>.pth`` files, removed once the next regular checkpoint is saved.
        """
        step = runner.iter
        meta = dict(epoch=runner.epoch, iter=step)
        if not self.by_epoch:
            self._save_checkpoint_with_step(runner, step, meta)
            return self.last_ckpt
        filename = f'iter_{step}.pth'
        path = self.file_backend.join_path(self.out_dir, filename)
        previous = runner.message_hub.get_info(INTERIM_KEY, None)
        runner.message_hub.update_info(INTERIM_KEY, path)  # in the checkpoint: the resumed run removes it
        try:
            runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                                   save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                                   meta=meta, by_epoch=False, backend_args=self.backend_args, **self.args)
        except BaseException:
            runner.message_hub.update_info(INTERIM_KEY, previous)
            raise
        self._became_last(runner, path)
        return path

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """MMEngine's order reversed: save, point ``last_checkpoint`` at it, then remove what it replaces."""
        outdated: List[int] = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            # keep_ckpt_ids is a deque of max_keep_ckpts: appending drops the oldest, which goes after saving
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids[0])
            new_ids = list(self.keep_ckpt_ids)[len(outdated):] + [step]
        else:
            new_ids = None
        filename = self.filename_tmpl.format(step)
        path = self.file_backend.join_path(self.out_dir, filename)
        try:
            runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                                   save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                                   meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        except CheckpointSaveError as error:
            raise CheckpointSaveError(
                error.errno, f'{error.strerror}. Training stopped; the last checkpoint, {self.last_ckpt}, is kept '
                '(free space, then run again with --resume)') from error
        interim = runner.message_hub.get_info(INTERIM_KEY, None)
        self._became_last(runner, path)
        if new_ids is not None:
            self.keep_ckpt_ids.clear()
            self.keep_ckpt_ids.extend(new_ids)
            runner.message_hub.update_info('keep_ckpt_ids', new_ids)
        if interim:
            runner.message_hub.update_info(INTERIM_KEY, None)
        if not is_main_process():
            return
        for old in outdated:
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old)), path)
        if interim:
            self._remove(interim, path)

    def _became_last(self, runner, path: str) -> None:
        """``path`` is on disk: it is now the last checkpoint (``work_dir/last_checkpoint`` names it)."""
        self.last_ckpt = path
        runner.message_hub.update_info('last_ckpt', path)
        if is_main_process():
            atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), str(path).encode('utf-8'))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """MMEngine's best-checkpoint rule; the previous best is removed after the new best is written."""
        if not self.save_best:  # no best checkpoint kept (MMEngine sets no key indicators then)
            return
        before = self._best_paths()
        # with no previous path, MMEngine's hook has nothing to remove before it saves
        if len(self.key_indicators) == 1:
            self.best_ckpt_path = None
        else:
            self.best_ckpt_path_dict = {key: None for key in self.best_ckpt_path_dict}
        try:
            super()._save_best_checkpoint(runner, metrics)
        except BaseException:
            self._restore_best_paths(before, {})
            raise
        after = self._best_paths()
        self._restore_best_paths(before, after)
        if is_main_process():
            for key, old in before.items():
                if old and after.get(key) and after[key] != old:
                    self._remove(old, after[key])
                    runner.logger.info(f'The previous best checkpoint {old} is removed')

    def _best_paths(self) -> Dict[str, Optional[str]]:
        if len(self.key_indicators) == 1:
            return {'': self.best_ckpt_path}
        return dict(self.best_ckpt_path_dict)

    def _restore_best_paths(self, before: Dict[str, Optional[str]], after: Dict[str, Optional[str]]) -> None:
        """Keep the paths the save set; put back the old ones where no new best was saved."""
        merged = {key: after.get(key) or old for key, old in before.items()}
        if len(self.key_indicators) == 1:
            self.best_ckpt_path = merged['']
        else:
            self.best_ckpt_path_dict = merged

    def _remove(self, path: str, kept: str) -> None:
        if path == kept:
            return
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by DeepSpeed are folders
            self.file_backend.rmtree(path)

