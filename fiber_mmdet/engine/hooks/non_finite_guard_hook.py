"""Non-finite training made loud: skipped steps logged, a run of them stops training, no NaN checkpoint."""
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
from mmengine.hooks import Hook

from mmdet.registry import HOOKS
from ..optimizers.non_finite_skip_optim_wrapper import non_finite_indices, step_guards

DATA_BATCH = Optional[Union[dict, tuple, list]]


class NonFiniteTrainingError(RuntimeError):
    """Training stopped: too many consecutive skipped steps, or weights that are not finite."""


def non_finite_tensors(state_dict: Mapping[str, object]) -> List[str]:
    """Names of the floating-point tensors of ``state_dict`` holding a NaN or an inf."""
    named = [(k, v) for k, v in state_dict.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return [named[i][0] for i in non_finite_indices([v for _, v in named])]


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Reports the steps a :class:`NonFiniteSkipOptimWrapper` skipped, stops a run that keeps skipping, and
    refuses to write a checkpoint whose weights are not finite.

    * Each skipped step is logged with its iteration (1-based, as in the log lines), the reason (non-finite loss,
      non-finite gradients) and every loss term of that iteration.
    * After ``max_consecutive_skips`` skipped steps in a row training stops with
      :class:`NonFiniteTrainingError`; the checkpoints already written (all finite) are kept.
    * Under AMP with a dynamic loss scale, a step the scaler skipped while backing off (finite loss, scaled
      gradients overflowed, scale halved) is the scaler finding its scale -- torch's starts at 2**16 and fp16
      runs routinely back off several times in their first steps -- so it is logged and counted apart and neither
      counts towards nor ends a run of skipped steps. A scale that falls below ``min_loss_scale`` stops training:
      then the gradients overflow fp16 even barely scaled, which is divergence, not calibration.
    * Every ``check_weights_every`` iterations the weights are checked; NaN/inf weights (e.g. from an optimizer
      that is not skip-guarded, or an update that overflowed) stop training at once with the tensors named,
      before the checkpoint hook runs -- it deletes the oldest kept checkpoint (``max_keep_ckpts``) before it
      writes the new one, so the check has to come first to keep the last good checkpoint.
    * Before any checkpoint is saved, ``state_dict`` and ``ema_state_dict`` are checked too: a NaN/inf tensor
      stops training with the tensors named, and nothing is written.
    * At the end, the number of skipped steps and their iterations are logged.

    Args:
        max_consecutive_skips (int): Consecutive skipped steps that stop training. Defaults to 10.
        check_weights_every (int): Iterations between weight checks; 0 checks only before saving. Defaults
            to 1 (one fused norm over the weights and one synchronisation per iteration: 2 ms for the toy
            model's 4 M parameters on a 2-core CPU, against a 0.35 s step).
        min_loss_scale (float): An AMP loss scale below this after a back-off stops training. Defaults to 1.0
            (unscaled fp16 gradients overflowing).
    """

    priority = 'ABOVE_NORMAL'  # before the logger and checkpoint hooks see the iteration

    def __init__(self, max_consecutive_skips: int = 10, check_weights_every: int = 1,
                 min_loss_scale: float = 1.0) -> None:
        if max_consecutive_skips < 1 or check_weights_every < 0 or not min_loss_scale > 0:
            raise ValueError(f'need max_consecutive_skips >= 1, check_weights_every >= 0 and min_loss_scale > 0, '
                             f'got {max_consecutive_skips}, {check_weights_every} and {min_loss_scale}')
        self.max_consecutive_skips = max_consecutive_skips
        self.check_weights_every = check_weights_every
        self.min_loss_scale = min_loss_scale
        self.consecutive: List[int] = []
        self.skipped: List[int] = []
        self.scaler_backoffs: List[int] = []

    def before_train(self, runner) -> None:
        if not step_guards(runner.optim_wrapper):
            runner.logger.warning(
                f'optim_wrapper {type(runner.optim_wrapper).__name__} steps whatever the loss: a NaN/inf loss '
                'will reach the weights (NonFiniteGuardHook then stops at the next checkpoint). Use '
                'optim_wrapper.type=NonFiniteSkipOptimWrapper (or NonFiniteSkipAmpOptimWrapper with AMP).')

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: Optional[Dict] = None) -> None:
        iteration = runner.iter + 1
        if self.check_weights_every and iteration % self.check_weights_every == 0:
            self._check_weights(runner, iteration)
        guards = step_guards(runner.optim_wrapper)
        backoffs = [g for g in guards if g.last_skip_cause == 'loss_scaler']
        if backoffs:
            self._scaler_backoff(runner, iteration, backoffs)
        reasons = [g.last_skip for g in guards if g.last_skip is not None and g.last_skip_cause != 'loss_scaler']
        if not reasons:
            if not backoffs:  # an update happened: the run of skipped steps is over
                self.consecutive = []
            return
        self.skipped.append(iteration)
        self.consecutive.append(iteration)
        terms = ', '.join(f'{k}={float(torch.as_tensor(v).detach()):.4g}' for k, v in (outputs or {}).items()
                          if isinstance(v, (torch.Tensor, float, int)) and k.startswith('loss'))
        runner.logger.warning(
            f'iteration {iteration}: step skipped ({"; ".join(reasons)}): {terms}; '
            f'{len(self.consecutive)} in a row, {len(self.skipped)} in this run')
        if len(self.consecutive) >= self.max_consecutive_skips:
            raise NonFiniteTrainingError(
                f'{len(self.consecutive)} consecutive steps skipped (iterations {self.consecutive[0]}-'
                f'{self.consecutive[-1]}, last reason: {reasons[-1]}): training stopped '
                f'(NonFiniteGuardHook.max_consecutive_skips={self.max_consecutive_skips}). The weights were not '
                f'updated by those steps; the last checkpoint written is {self._last_checkpoint(runner)}. '
                'Lower the learning rate, enable gradient clipping or check the data of these iterations.')

    def _scaler_backoff(self, runner, iteration: int, guards: List) -> None:
        """Log a loss-scaler back-off, count it apart, and stop if the scale collapsed."""
        self.scaler_backoffs.append(iteration)
        for guard in guards:
            old, new = guard.last_loss_scale
            runner.logger.info(
                f'iteration {iteration}: AMP loss scaler backed off (scale {old:.10g} -> {new:.10g}): the scaled '
                f'gradients overflowed and the step was skipped; not counted as a non-finite step '
                f'({len(self.scaler_backoffs)} back-offs in this run)')
            if new < self.min_loss_scale:
                raise NonFiniteTrainingError(
                    f'iteration {iteration}: the AMP loss scale fell to {new:.10g}, below '
                    f'NonFiniteGuardHook.min_loss_scale={self.min_loss_scale:.10g}, after '
                    f'{len(self.scaler_backoffs)} back-offs (iterations {_compact(self.scaler_backoffs)}): the '
                    f'gradients overflow even barely scaled. Training stopped; the last checkpoint written is '
                    f'{self._last_checkpoint(runner)}. '
                    'Lower the learning rate, enable gradient clipping, or train with '
                    "optim_wrapper.dtype='bfloat16' (float32's range) where the GPU supports it.")

    def _check_weights(self, runner, iteration: int) -> None:
        named = [(n, p.detach()) for n, p in runner.model.named_parameters() if p.is_floating_point()]
        bad = [named[i][0] for i in non_finite_indices([p for _, p in named])]
        if not bad:
            return
        raise NonFiniteTrainingError(
            f'iteration {iteration}: {len(bad)} weight tensor(s) are NaN/inf (first: {bad[:5]}); training stopped '
            f'before they reach a checkpoint. The last checkpoint written is {self._last_checkpoint(runner)}.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('state_dict', 'ema_state_dict'):
            bad = non_finite_tensors(checkpoint.get(key, {}))
            if bad:
                raise NonFiniteTrainingError(
                    f'refusing to save a checkpoint at iteration {runner.iter + 1}: {len(bad)} tensor(s) of its '
                    f'{key} hold NaN/inf (first: {bad[:5]}). The last checkpoint written is '
                    f'{self._last_checkpoint(runner)}.')

    def after_train(self, runner) -> None:
        if self.skipped:
            shown = _compact(self.skipped)
            runner.logger.warning(f'{len(self.skipped)} of {runner.iter} training steps were skipped for '
                                  f'non-finite values (iterations {shown})')
        if self.scaler_backoffs:
            runner.logger.info(f'{len(self.scaler_backoffs)} of {runner.iter} training steps were skipped by the '
                               f'AMP loss scaler backing off (iterations {_compact(self.scaler_backoffs)})')

    @staticmethod
    def _last_checkpoint(runner) -> str:
        return runner.message_hub.get_info('last_ckpt', None) or 'none (no checkpoint was saved in this run)'


def _compact(iterations: Sequence[int], limit: int = 20) -> str:
    shown = ', '.join(map(str, iterations[:limit]))
    return shown + (f', ... ({len(iterations) - limit} more)' if len(iterations) > limit else '')
