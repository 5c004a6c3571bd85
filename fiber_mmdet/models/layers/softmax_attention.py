"""Softmax attention that never keeps the (…, L, S) probabilities for the backward pass.

``torch.nn.functional.scaled_dot_product_attention`` has fused kernels that store only the inputs and a
per-row statistic, but on the CPU it falls back to its "math" path — which keeps the probabilities, the dropout
noise and the dropped probabilities, float tensors of the full (…, L, S) size — whenever the attention has
dropout (RoBERTa's 0.1) or a mask that needs a gradient (Swin's relative position bias), or the inputs are not
4-D. In a FIBER-B training step at 512² that was about 40 % of the text model's and of the Swin blocks'
activation memory.

:func:`softmax_attention` uses the fused kernels wherever they apply and otherwise
:class:`RecomputedSoftmaxAttention`, which keeps q, k, v, the (broadcastable, small) mask and bias and a
one-byte dropout mask, and recomputes the probabilities in the backward pass (one more ``q @ kᵀ`` and softmax
per attention). Its values are those of the math path: same formula, same dropout draws from the same
generator.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _additive(mask: Optional[Tensor], bias: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """One additive mask from a bool "may attend" mask (finfo.min where False) or a float one, plus a bias."""
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
    elif mask is not None:
        mask = mask.to(dtype)
    if bias is None:
        return mask
    bias = bias.to(dtype)
    return bias if mask is None else mask + bias


def _probabilities(q: Tensor, k: Tensor, additive: Optional[Tensor], valid: Optional[Tensor],
                   scale: float) -> Tensor:
    """softmax(q kᵀ · scale + additive) (…, L, S); rows without any valid key are 0, as in SDPA."""
    logits = (q * scale) @ k.transpose(-2, -1)
    if additive is not None:
        logits = logits + additive
    probs = logits.softmax(dim=-1)
    if valid is not None:
        any_valid = valid.any(dim=-1, keepdim=True)
        if not bool(any_valid.all()):
            probs = probs.masked_fill(~any_valid, 0.)
    return probs


def _fused(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], bias: Optional[Tensor], dropout_p: float,
           scale: float) -> Tensor:
    """SDPA on (…, heads, L, E) inputs, laid out as the fused kernels take them.

    The CPU's flash kernel needs 4-D inputs and a 4-D mask (a 3-D (heads, L, S) bias sends SDPA to its
    unfused math path, 2-4x slower on Swin's windows), so: the masks are combined and given leading axes of
    size 1, and more than 4 dims are folded into (prod(leading dims), heads, L, E). Folding the leading axes
    (not the middle ones) keeps q, k, v and a mask that does not repeat over them views, with no copy.
    """
    if bias is not None:
        mask = _additive(mask, bias, q.dtype)
    if mask is not None and mask.dim() < 4:
        mask = mask.view((1,) * (4 - mask.dim()) + mask.shape)
    if q.dim() <= 4:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    shape = q.shape[:-1] + v.shape[-1:]
    if mask is not None:
        mask = mask.expand(*q.shape[:-1], k.shape[-2]).flatten(0, -4)
    q, k, v = q.flatten(0, -4), k.flatten(0, -4), v.flatten(0, -4)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale).view(shape)


class RecomputedSoftmaxAttention(torch.autograd.Function):
    """``dropout(softmax(q kᵀ · scale + mask + bias)) @ v`` whose backward recomputes the probabilities.

    Saved for backward: q, k, v, the mask and the bias as given (broadcastable, usually far smaller than the
    probabilities) and, with dropout, a bool keep mask. The dropout draws ``bernoulli(1 - p)`` over the
    probabilities' shape, as torch's math path does, so a seeded run drops the same weights.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], bias: Optional[Tensor],
                dropout_p: float, scale: float) -> Tensor:
        keep = None
        if dropout_p > 0:
            valid = mask if mask is not None and mask.dtype == torch.bool else None
            probs = _probabilities(q, k, _additive(mask, bias, q.dtype), valid, scale)
            noise = torch.empty_like(probs).bernoulli_(1 - dropout_p).div_(1 - dropout_p)
            out = (probs * noise) @ v
            keep = noise.bool()
            del probs, noise
        else:  # no dropout: the fused kernel gives the values without materialising anything
            out = _fused(q, k, v, mask, bias, 0., scale)
        ctx.save_for_backward(q, k, v, mask, bias, keep)
        ctx.dropout_p, ctx.scale = dropout_p, scale
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        q, k, v, mask, bias, keep = ctx.saved_tensors
        inputs = [q, k, v, mask, bias, keep, grad_out]
        # the recomputed (…, L, S) tensors are built a slice of the widest leading axis at a time, so that
        # the backward pass never holds more than a few BACKWARD_CHUNK-sized temporaries
        lead = torch.broadcast_shapes(*(t.shape[:-2] for t in inputs if t is not None))
        rank = len(lead) + 2
        numel = q.shape[-2] * k.shape[-2] * int(torch.Size(lead).numel())
        dim = max(range(len(lead)), key=lambda d: lead[d]) if lead else None
        pieces = 1 if dim is None else min(lead[dim], -(-numel // BACKWARD_CHUNK))
        if pieces <= 1:
            grads = _attention_grads(*inputs, ctx.dropout_p, ctx.scale, ctx.needs_input_grad)
        else:
            step = -(-lead[dim] // pieces)
            parts = []
            for start in range(0, lead[dim], step):
                sliced = [_narrow(t, dim, rank, start, step) for t in inputs]
                parts.append(_attention_grads(*sliced, ctx.dropout_p, ctx.scale, ctx.needs_input_grad))
            grads = [None if parts[0][i] is None else _join([p[i] for p in parts], t, dim, rank)
                     for i, t in enumerate(inputs[:5])]
        return (*grads, None, None)


#: elements of a (…, L, S) temporary in the backward pass (4 Mi = 16 MiB in float32)
BACKWARD_CHUNK = 1 << 22


def _narrow(t: Optional[Tensor], dim: int, rank: int, start: int, length: int) -> Optional[Tensor]:
    """``t``'s slice along the broadcast axis ``dim`` of a rank-``rank`` layout (as it is where it broadcasts)."""
    if t is None:
        return None
    d = dim - (rank - t.dim())
    if d < 0 or t.shape[d] == 1:
        return t
    return t.narrow(d, start, min(length, t.shape[d] - start))


def _join(parts, t: Tensor, dim: int, rank: int) -> Tensor:
    """Gradients of the slices back to ``t``'s shape: concatenated where ``t`` was sliced, summed elsewhere."""
    d = dim - (rank - t.dim())
    if d < 0 or t.shape[d] == 1:
        return torch.stack(parts).sum(0)
    return torch.cat(parts, dim=d)


def _attention_grads(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], bias: Optional[Tensor],
                     keep: Optional[Tensor], grad_out: Tensor, dropout_p: float, scale: float,
                     needs: Tuple[bool, ...]) -> Tuple[Optional[Tensor], ...]:
    """Gradients for q, k, v, mask, bias (each of its input's shape) from recomputed probabilities."""
    valid = mask if mask is not None and mask.dtype == torch.bool else None
    probs = _probabilities(q, k, _additive(mask, bias, q.dtype), valid, scale)
    grad_probs = grad_out @ v.transpose(-2, -1)  # (…, L, S)
    if keep is not None:
        noise = keep.to(probs.dtype).div_(1 - dropout_p)
        dropped = probs * noise
        grad_probs = grad_probs.mul_(noise)
        del noise
    else:
        dropped = probs
    grad_v = (dropped.transpose(-2, -1) @ grad_out).sum_to_size(v.shape)
    del dropped
    grad_logits = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
    del probs, grad_probs
    grad_q = (grad_logits @ k).mul_(scale).sum_to_size(q.shape)
    grad_k = (grad_logits.transpose(-2, -1) @ q).mul_(scale).sum_to_size(k.shape)
    grad_mask = grad_logits.sum_to_size(mask.shape) if needs[3] else None
    grad_bias = grad_logits.sum_to_size(bias.shape) if needs[4] else None
    return grad_q, grad_k, grad_v, grad_mask, grad_bias


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None,
                      attn_bias: Optional[Tensor] = None, dropout_p: float = 0.,
                      scale: Optional[float] = None) -> Tensor:
    """``scaled_dot_product_attention`` that keeps no (…, L, S) tensor for the backward pass.

    Args:
        q (Tensor): (…, L, E) queries (4-D or more).
        k (Tensor): (…, S, E) keys.
        v (Tensor): (…, S, Ev) values.
        attn_mask (Tensor, optional): broadcastable to (…, L, S); bool (True = may attend) or additive float.
        attn_bias (Tensor, optional): a second additive term broadcastable to (…, L, S), e.g. a learnt
            relative position bias, added to ``attn_mask``; kept apart so that two small broadcastable terms
            are never stored as their full-size sum.
        dropout_p (float): dropout on the attention weights (pass 0 in eval mode).
        scale (float, optional): logit scale; ``E ** -0.5`` by default.

    Returns:
        Tensor: (…, L, Ev).

    SDPA runs when nothing needs a gradient, on GPUs (their fused kernels take dropout and mask gradients), on
    the CPU when its fused kernel applies (no dropout, no mask gradient) and under ``torch.compile``; otherwise
    :class:`RecomputedSoftmaxAttention`.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    tensors = [t for t in (q, k, v, attn_mask, attn_bias) if t is not None]
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    mask_grad = any(t is not None and t.requires_grad for t in (attn_mask, attn_bias))
    # under torch.compile SDPA is traced whole and the compiler chooses what backward keeps; the recomputing
    # function's chunked backward is a Python loop over shapes, which the compiler cannot trace
    if (not needs_grad or q.device.type != 'cpu' or (dropout_p == 0 and not mask_grad)
            or torch.compiler.is_compiling()):
        return _fused(q, k, v, attn_mask, attn_bias, dropout_p, scale)
    return RecomputedSoftmaxAttention.apply(q, k, v, attn_mask, attn_bias, dropout_p, scale)
