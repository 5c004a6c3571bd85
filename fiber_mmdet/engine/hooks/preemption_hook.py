"""Stop training cleanly when the job is pre-empted: a resumable checkpoint, then a status a job script can read."""
import signal
import threading
from typing import Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce, barrier
from mmengine.hooks import CheckpointHook, Hook

from mmdet.registry import HOOKS
from .atomic_checkpoint_hook import AtomicCheckpointHook

DATA_BATCH = Optional[Union[dict, tuple, list]]

#: Exit status of a training process stopped by :class:`PreemptionHook` after saving its checkpoint
#: (``EX_TEMPFAIL`` of ``sysexits.h``: a temporary failure, run it again). A job script requeues on it.
PREEMPTED_EXIT_CODE = 75


class TrainingPreempted(SystemExit):
    """Training stopped on a pre-emption signal after writing a checkpoint; the process exits with
    :data:`PREEMPTED_EXIT_CODE` (a ``SystemExit``: no traceback, whatever the entry point)."""

    def __init__(self, message: str) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return self.message


@HOOKS.register_module()
class PreemptionHook(Hook):
    """On SIGTERM or SIGUSR1 (Slurm, Kubernetes, spot instances), finish the current iteration and the validation
    due after it, save a checkpoint of it, log that, and exit with :data:`PREEMPTED_EXIT_CODE` (75).

    The signal only sets a flag; before each iteration the ranks take the maximum of their flags (one all-reduce
    of one number, so every rank stops at the same iteration even if only some received the signal), and if it
    is set the checkpoint hook (:class:`AtomicCheckpointHook`) writes ``iter_<n>.pth`` on rank 0 and points
    ``last_checkpoint`` at it; ``tools/train.py --resume`` continues from there with the losses of an
    uninterrupted run. The signal's previous handlers come back when training ends.

    Args:
        signals (Sequence[str]): Signals that request the stop. Defaults to ``('SIGTERM', 'SIGUSR1')``.
        check_interval (int): Iterations between checks of the flag (each check is one all-reduce under
            torch.distributed); the stop waits at most this many iterations. Defaults to 1.
    """

    priority = 'LOWEST'  # after every other hook of the iteration has run

    def __init__(self, signals: Sequence[str] = ('SIGTERM', 'SIGUSR1'), check_interval: int = 1) -> None:
        unknown = [name for name in signals if not isinstance(getattr(signal, str(name), None), signal.Signals)]
        if unknown or check_interval < 1:
            raise ValueError(f'PreemptionHook: unknown signals {unknown} or check_interval {check_interval} < 1')
        self.signals = [getattr(signal, name) for name in signals]
        self.check_interval = check_interval
        self.received: Optional[int] = None
        self._previous: dict = {}

    def _request_stop(self, signum: int, frame) -> None:
        self.received = signum  # nothing else here: a handler may interrupt any Python code, logging included

    def before_train(self, runner) -> None:
        hooks = [hook for hook in runner.hooks if isinstance(hook, CheckpointHook)]
        if not any(isinstance(hook, AtomicCheckpointHook) for hook in hooks):
            runner.logger.warning(
                f'PreemptionHook saves through AtomicCheckpointHook; this run has '
                f'{type(hooks[0]).__name__ if hooks else "no checkpoint hook"}, so a pre-emption signal stops '
                "training without a checkpoint (set default_hooks.checkpoint.type='AtomicCheckpointHook', "
                "CheckpointHook's arguments; tools/train.py does)")
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('PreemptionHook: training runs outside the main thread, where signal handlers '
                                  'cannot be installed; a pre-emption signal will not save a checkpoint')
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._request_stop)
        names = ', '.join(signal.Signals(s).name for s in self.signals)
        runner.logger.info(f'on {names}: training stops after the current iteration with a checkpoint, exit '
                           f'status {PREEMPTED_EXIT_CODE}')

    def before_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        if runner.iter % self.check_interval or not self._stop_requested():
            return
        name = signal.Signals(self.received).name if self.received else 'a signal received by another rank'
        hook = _checkpoint_hook(runner)
        if hook is None:
            message = (f'{name}: training stopped at iteration {runner.iter} WITHOUT a checkpoint (no '
                       f'AtomicCheckpointHook); the last one is {runner.message_hub.get_info("last_ckpt", None)}')
        elif runner.iter == 0:
            message = f'{name}: training stopped before its first iteration; nothing to save'
        else:
            path = hook.save_now(runner)
            message = (f'{name}: training stopped after iteration {runner.iter}; its checkpoint {path} is saved. '
                       f'Run the same command with --resume to continue.')
        barrier()  # no rank leaves while rank 0 is still writing
        runner.logger.warning(f'{message} Exit status {PREEMPTED_EXIT_CODE} (pre-empted).')
        self._restore_handlers()
        raise TrainingPreempted(message)

    def after_train(self, runner) -> None:
        self._restore_handlers()

    def _stop_requested(self) -> bool:
        flag = torch.tensor([0 if self.received is None else 1], dtype=torch.int32)
        all_reduce(flag, op='max')  # a no-op outside torch.distributed
        return bool(flag.item())

    def _restore_handlers(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


def _checkpoint_hook(runner) -> Optional[AtomicCheckpointHook]:
    hooks = [hook for hook in runner.hooks if isinstance(hook, AtomicCheckpointHook)]
    return hooks[0] if hooks else None
