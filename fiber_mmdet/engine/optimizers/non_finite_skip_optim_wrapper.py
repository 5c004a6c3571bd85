"""Optimizer wrappers that skip a step whose loss or gradients are not finite.

The original FIBER logs a NaN/inf total loss and overwrites it with 0 before ``backward`` (spec §9), so AdamW
still steps (momentum and weight decay move the weights). Here such a step is skipped entirely: no backward, no
optimizer update. MMEngine's wrappers step whatever the loss is, so one NaN loss turns every weight into NaN.

What is skipped, and why (``last_skip``, read by :class:`NonFiniteGuardHook` and :class:`NonFiniteSkipEMAHook`):

* a non-finite total loss on any rank (decided on all ranks together, so DDP's gradient all-reduce never waits
  for a rank that skipped its backward);
* non-finite gradients with a finite loss (fp32 overflow), checked after the all-reduce, before clipping;
* under AMP, MMEngine's dynamic loss scaler already skips steps whose gradients overflowed: the skip is seen as
  the scale going down and recorded the same way.
"""
from typing import Dict, List, Optional

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
        skipped_steps (int): skipped updates since construction.
    """
    last_skip: Optional[str] = None
    skipped_steps: int = 0
    _spoiled: Optional[str] = None  # a micro-batch of the current accumulation window had a non-finite loss

    def update_params(self,
                      loss: Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """``OptimWrapper.update_params`` that leaves out the backward of a non-finite loss and then skips the
        update of its accumulation window (its other micro-batches' gradients are discarded)."""
        self.last_skip = None
        if _finite_on_all_ranks(loss):
            self.backward(self.scale_loss(loss))
        else:
            self._inner_count += 1  # keeps the accumulation window where MMEngine expects it
            self._spoiled = 'non-finite loss'
        if self.should_update():
            if self._spoiled is None:
                self.step(**(step_kwargs or {}))
            else:
                self._record_skip(self._spoiled)
            self.zero_grad(**(zero_kwargs or {}))
            self._spoiled = None

    def _record_skip(self, reason: str) -> None:
        self.last_skip = reason
        self.skipped_steps += 1

    def _parameters_with_grad(self) -> List[Tensor]:
        return [p for group in self.optimizer.param_groups for p in group['params'] if p.grad is not None]


@OPTIM_WRAPPERS.register_module()
class NonFiniteSkipOptimWrapper(NonFiniteStepGuard, OptimWrapper):
    """MMEngine's ``OptimWrapper`` (same arguments) that skips steps with a non-finite loss or gradients."""

    def step(self, **kwargs) -> None:
        if non_finite_indices([p.grad for p in self._parameters_with_grad()]):
            self._record_skip('non-finite gradients')
            return
        super().step(**kwargs)


@OPTIM_WRAPPERS.register_module()
class NonFiniteSkipAmpOptimWrapper(NonFiniteStepGuard, AmpOptimWrapper):
    """MMEngine's ``AmpOptimWrapper`` (same arguments) that skips steps with a non-finite loss, and records the
    steps its loss scaler skips for overflowing gradients.

    A scaler skip is recognised by the scale going down, which needs dynamic loss scaling
    (``loss_scale='dynamic'`` or a dict with ``backoff_factor`` < 1, as ``tools/train.py --amp`` sets); with a
    static scale the scaler still skips those steps but they are not counted.
    """

    def step(self, **kwargs) -> None:
        scale = self.loss_scaler.get_scale()
        super().step(**kwargs)
        new_scale = self.loss_scaler.get_scale()
        if new_scale < scale:
            self._record_skip(f'inf/NaN gradients (AMP loss scaler: scale {scale:g} -> {new_scale:g})')


def step_guards(optim_wrapper) -> List[NonFiniteStepGuard]:
    """The skip-guarded wrappers of a runner's ``optim_wrapper`` (one, or those of an ``OptimWrapperDict``)."""
    wrappers = optim_wrapper.values() if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper]
    return [w for w in wrappers if isinstance(w, NonFiniteStepGuard)]
