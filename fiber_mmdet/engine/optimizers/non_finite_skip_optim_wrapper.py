"""Optimizer wrappers that skip a step whose loss or gradients are not finite.

The original FIBER logs a NaN/inf total loss and overwrites it with 0 before ``backward`` (spec §9), so AdamW
still steps (momentum and weight decay move the weights). Here such a step is skipped entirely: no backward, no
optimizer update. MMEngine's wrappers step whatever the loss is, so one NaN loss turns every weight into NaN.

What is skipped, and why (``last_skip`` and ``last_skip_cause``, read by :class:`NonFiniteGuardHook` and
:class:`NonFiniteSkipEMAHook`):

* ``'loss'``: a non-finite total loss on any rank (decided on all ranks together, so DDP's gradient all-reduce
  never waits for a rank that skipped its backward);
* ``'gradients'``: non-finite gradients with a finite loss (fp32 overflow, or AMP with a static loss scale),
  checked after the all-reduce, before clipping;
* ``'loss_scaler'``: under AMP with a dynamic loss scale, a finite loss whose *scaled* gradients overflowed: the
  scaler skips the step and halves its scale. That is how a dynamic scaler finds its scale (torch's starts at
  2**16 and fp16 training routinely backs off several times in its first steps), not a sign of divergence, so
  :class:`NonFiniteGuardHook` counts these apart and only stops when the scale itself collapses.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmengine.dist import all_reduce
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict
from torch import Tensor

from mmdet.registry import OPTIM_WRAPPERS


def non_finite_indices(tensors: List[Tensor]) -> List[int]:
    """Indices of the tensors holding a NaN or an inf. Fast path: one fused L2 norm over all of them (a few ms
    for FIBER-sized models, where a per-tensor ``isfinite`` is ~100x slower on CPUs); only when that norm is not
    finite -- or overflowed, for values beyond ~1e19 -- is each tensor checked."""
    if not tensors or torch.isfinite(torch.nn.utils.get_total_norm(tensors)):
        return []
    return [i for i, t in enumerate(tensors) if not torch.isfinite(t).all()]


def _finite_on_all_ranks(loss: Tensor) -> bool:
    """True only if ``loss`` is finite on every rank (one all-reduce; a no-op without distributed)."""
    finite = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
    all_reduce(finite, op='min')
    return bool(finite.item())


class NonFiniteStepGuard:
    """Mixin for MMEngine's ``OptimWrapper`` classes: skips non-finite steps and counts them.

    Attributes:
        last_skip (str | None): why the last optimizer update was skipped, None if it happened. Set at each
            update boundary (every ``accumulative_counts`` calls of :meth:`update_params`).
        last_skip_cause (str | None): ``'loss'``, ``'gradients'`` or ``'loss_scaler'`` (see the module
            docstring), None if the update happened.
        last_loss_scale (tuple[float, float] | None): the AMP loss scale before and after the last update
            (None without AMP).
        skipped_steps (int): skipped updates since construction, whatever the cause.
    """
    last_skip: Optional[str] = None
    last_skip_cause: Optional[str] = None
    last_loss_scale: Optional[Tuple[float, float]] = None
    skipped_steps: int = 0
    _spoiled: Optional[str] = None  # a micro-batch of the current accumulation window had a non-finite loss

    def update_params(self,
                      loss: Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """``OptimWrapper.update_params`` that leaves out the backward of a non-finite loss and then skips the
        update of its accumulation window (its other micro-batches' gradients are discarded)."""
        self.last_skip = None
        self.last_skip_cause = None
        if _finite_on_all_ranks(loss):
            self.backward(self.scale_loss(loss))
        else:
            self._inner_count += 1  # keeps the accumulation window where MMEngine expects it
            self._spoiled = 'non-finite loss'
        if self.should_update():
            if self._spoiled is None:
                self.step(**(step_kwargs or {}))
            else:
                self._record_skip(self._spoiled, 'loss')
            self.zero_grad(**(zero_kwargs or {}))
            self._spoiled = None

    def _record_skip(self, reason: str, cause: str) -> None:
        self.last_skip = reason
        self.last_skip_cause = cause
        self.skipped_steps += 1

    def _parameters_with_grad(self) -> List[Tensor]:
        return [p for group in self.optimizer.param_groups for p in group['params'] if p.grad is not None]


@OPTIM_WRAPPERS.register_module()
class NonFiniteSkipOptimWrapper(NonFiniteStepGuard, OptimWrapper):
    """MMEngine's ``OptimWrapper`` (same arguments) that skips steps with a non-finite loss or gradients."""

    def step(self, **kwargs) -> None:
        if non_finite_indices([p.grad for p in self._parameters_with_grad()]):
            self._record_skip('non-finite gradients', 'gradients')
            return
        super().step(**kwargs)


@OPTIM_WRAPPERS.register_module()
class NonFiniteSkipAmpOptimWrapper(NonFiniteStepGuard, AmpOptimWrapper):
    """MMEngine's ``AmpOptimWrapper`` (same arguments) that skips steps with a non-finite loss, and tells the
    steps its dynamic loss scaler skips while it backs off (``last_skip_cause='loss_scaler'``) from overflowing
    gradients under a fixed scale (``'gradients'``).

    The gradients are unscaled before every step (MMEngine only does it when clipping) so that they are checked
    at their true values. ``dtype`` picks the autocast type: ``'float16'`` (None: the device default, float16 on
    CUDA) needs loss scaling; ``'bfloat16'`` has float32's exponent range, so gradients neither underflow nor
    overflow where float32 would not: with it ``loss_scale='dynamic'`` becomes a constant scale of 1 (a dynamic
    scaler would only grow its scale by 2x every 2000 clean steps until the scaled loss overflows float32).

    Args:
        loss_scale (str | float | dict): ``'dynamic'``, a constant scale, or ``GradScaler`` arguments.
            Defaults to ``'dynamic'``.
        dtype (str | torch.dtype, optional): autocast type. Defaults to None.
        **kwargs: ``AmpOptimWrapper`` / ``OptimWrapper`` arguments.
    """

    def __init__(self, loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Optional[Union[str, torch.dtype]] = None, **kwargs) -> None:
        if loss_scale == 'dynamic' and dtype in ('bfloat16', torch.bfloat16):
            loss_scale = 1.0
        super().__init__(loss_scale=loss_scale, dtype=dtype, **kwargs)

    def step(self, **kwargs) -> None:
        scale = float(self.loss_scaler.get_scale())
        self.loss_scaler.unscale_(self.optimizer)  # no-op for a disabled scaler
        overflow = bool(non_finite_indices([p.grad for p in self._parameters_with_grad()]))
        if overflow and not self.loss_scaler.is_enabled():
            # a disabled scaler (no loss scaling at all) would step whatever the gradients are
            self.last_loss_scale = (scale, scale)
            self._record_skip('non-finite gradients (AMP without loss scaling)', 'gradients')
            return
        if self.clip_grad_kwargs and not overflow:
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)  # skips the update when the unscaled gradients overflow
        self.loss_scaler.update(self._scale_update_param)
        new_scale = float(self.loss_scaler.get_scale())
        self.last_loss_scale = (scale, new_scale)
        if not overflow:
            return
        if new_scale < scale:
            self._record_skip(f'inf/NaN gradients (AMP loss scaler: scale {scale:.10g} -> {new_scale:.10g})',
                              'loss_scaler')
        else:
            self._record_skip(f'non-finite gradients (AMP, fixed loss scale {scale:.10g})', 'gradients')


def step_guards(optim_wrapper) -> List[NonFiniteStepGuard]:
    """The skip-guarded wrappers of a runner's ``optim_wrapper`` (one, or those of an ``OptimWrapperDict``)."""
    wrappers = optim_wrapper.values() if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper]
    return [w for w in wrappers if isinstance(w, NonFiniteStepGuard)]
