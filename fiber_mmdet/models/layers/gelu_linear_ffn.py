"""A transformer FFN that does not store its GELU output for the backward pass.

In ``fc2(GELU(fc1(x)))`` autograd keeps two hidden-width tensors per block: ``fc1(x)`` (for GELU's gradient)
and ``GELU(fc1(x))`` (for fc2's weight gradient). :class:`GeluLinear` keeps only the first and recomputes the
GELU in the backward pass — an elementwise op, about 1 % of the block's backward, for half of the FFN's
activation memory (FIBER-B at 512²: 248 MiB over the 24 Swin blocks).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import FFN
from torch import Tensor


class GeluLinear(torch.autograd.Function):
    """``F.linear(F.gelu(h), weight, bias)`` (exact GELU) saving ``h`` instead of ``gelu(h)``."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        out = F.linear(F.gelu(h), weight, bias)
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        ctx.bias_dtype = None if bias is None else bias.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        h, weight = ctx.saved_tensors
        act = F.gelu(h)
        dtype = act.dtype  # under autocast the forward ran in this dtype; gradients of weights go back to fp32
        grad_out = grad_out.to(dtype)
        grad_h = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_act = grad_out @ weight.to(dtype)
            grad_h = torch.ops.aten.gelu_backward(grad_act, h)
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_out.flatten(0, -2).t() @ act.flatten(0, -2)).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.flatten(0, -2).sum(0).to(ctx.bias_dtype)
        return grad_h, grad_weight, grad_bias


class GeluLinearFFN(FFN):
    """mmcv's two-layer ``FFN`` (same parameters and state-dict names) whose hidden GELU output is recomputed
    in backward when that is exact: GELU activation, no dropout between GELU and the second linear layer.

    Args:
        **kwargs: :class:`mmcv.cnn.bricks.transformer.FFN` arguments (``num_fcs=2``, ``act_cfg=dict(type='GELU')``).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        fc1, act, drop = self.layers[0]
        self.recompute = (self.num_fcs == 2 and isinstance(act, torch.nn.GELU) and act.approximate == 'none'
                          and drop.p == 0)

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        """(…, C) -> (…, C), plus ``identity`` (``x`` by default) when ``add_identity``."""
        # under torch.compile the compiler chooses what backward keeps and recomputes (and fuses the GELU)
        if not (self.recompute and torch.is_grad_enabled()) or torch.compiler.is_compiling():
            return super().forward(x, identity)
        fc1, fc2, drop = self.layers[0][0], self.layers[1], self.layers[2]
        out = self.gamma2(drop(GeluLinear.apply(fc1(x), fc2.weight, fc2.bias)))
        if not self.add_identity:
            return self.dropout_layer(out)
        return (x if identity is None else identity) + self.dropout_layer(out)
