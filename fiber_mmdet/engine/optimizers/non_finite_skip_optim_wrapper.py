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
from contextlib import contextmanager
from functools import partial
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.dist import all_reduce
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict
from mmengine.device import get_device
from torch import Tensor
from torch.optim import Optimizer

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


def _parameters_device_type(optimizer: Optimizer) -> str:
    """The device type (``'cuda'``, ``'cpu'``, ...) of the optimizer's first parameter; MMEngine's device (the
    first accelerator available, else ``'cpu'``) for an optimizer without parameters."""
    for group in optimizer.param_groups:
        for param in group['params']:
            return param.device.type
    return get_device()


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
    gradients under a fixed scale (``'gradients'``). It also runs on the CPU.

    The gradients are unscaled before every step (MMEngine only does it when clipping) so that they are checked
    at their true values. ``dtype`` picks the autocast type: ``'float16'`` (None: the device default, float16 on
    CUDA, bfloat16 on the CPU) needs loss scaling; ``'bfloat16'`` has float32's exponent range, so gradients
    neither underflow nor overflow where float32 would not: with it ``loss_scale='dynamic'`` becomes a constant
    scale of 1 (a dynamic scaler would only grow its scale by 2x every 2000 clean steps until the scaled loss
    overflows float32).

    AMP runs on the device of the optimizer's parameters (MMEngine's Runner moves the model there before it builds
    the optimizer). On a GPU (CUDA, NPU, MLU, MUSA) everything is ``AmpOptimWrapper``'s own: its loss scaler and
    ``mmengine.runner.amp.autocast``. On the CPU, where ``AmpOptimWrapper`` refuses to start and MMEngine's
    autocast only allows bfloat16, the loss scaler is torch's CPU ``GradScaler`` (same settings: real scaling,
    back-offs and skips) and the forward runs under ``torch.autocast('cpu', dtype)``, float16 included.

    Args:
        loss_scale (str | float | dict): ``'dynamic'``, a constant scale, or ``GradScaler`` arguments.
            Defaults to ``'dynamic'``.
        dtype (str | torch.dtype, optional): autocast type. Defaults to None.
        use_fsdp (bool): ``ShardedGradScaler`` for ``FullyShardedDataParallel``. Defaults to False.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``accumulative_counts``, ``clip_grad``).
    """

    def __init__(self, loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Optional[Union[str, torch.dtype]] = None, use_fsdp: bool = False, **kwargs) -> None:
        optimizer = kwargs.get('optimizer')  # not an Optimizer: OptimWrapper.__init__ says so
        self.device_type = _parameters_device_type(optimizer) if isinstance(optimizer, Optimizer) else get_device()
        effective = dtype if dtype is not None or self.device_type != 'cpu' else torch.get_autocast_dtype('cpu')
        if loss_scale == 'dynamic' and effective in ('bfloat16', torch.bfloat16):
            loss_scale = 1.0
        if self.device_type != 'cpu':
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        # AmpOptimWrapper.__init__ asserts a GPU: the same set-up, with torch's CPU scaler
        OptimWrapper.__init__(self, **kwargs)
        if use_fsdp:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
            scaler = partial(ShardedGradScaler, 'cpu')
        else:
            scaler = partial(torch.amp.GradScaler, 'cpu')
        self._scale_update_param = None
        if loss_scale == 'dynamic':
            self.loss_scaler = scaler()
        elif isinstance(loss_scale, float):
            self._scale_update_param = loss_scale  # a fixed scale: update() resets it after a skip
            self.loss_scaler = scaler(init_scale=loss_scale)
        elif isinstance(loss_scale, dict):
            self.loss_scaler = scaler(**loss_scale)
        else:
            raise TypeError(f"loss_scale must be 'dynamic', a float or a dict of GradScaler arguments, "
                            f'got {loss_scale!r}')
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'dtype must be one of {self.valid_dtypes} or a torch.dtype, got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise TypeError(f'dtype must be None, a str or a torch.dtype, got {dtype!r}')
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        """``AmpOptimWrapper.optim_context``; on the CPU ``torch.autocast('cpu', cast_dtype)`` (MMEngine's
        ``autocast`` asserts bfloat16 there)."""
        if self.device_type != 'cpu':
            with super().optim_context(model):
                yield
        else:
            with OptimWrapper.optim_context(self, model), torch.autocast('cpu', dtype=self.cast_dtype):
                yield

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
