"""A modulated deformable convolution (DCNv2) for CPU tensors, equal to mmcv's CPU kernel, built from one
``embedding_bag`` (the bilinear, modulated im2col) and one matrix product per group.

mmcv's CPU ``ModulatedDeformConv2dFunction`` is a scalar loop per sample, forward and (much slower) backward.
Here each sample is a bag of its four bilinear corners, rows of the channels-last input weighted by bilinear
weight x modulation: ``F.embedding_bag(mode='sum', per_sample_weights=...)`` gathers and sums them in one
vectorised, multi-threaded pass (about 1.5-2x faster than ``grid_sample``'s channel-planar kernel on the head's
shapes), and autograd gives the input, offset and mask gradients. The semantics reproduced (mmcv
``modulated_deform_conv.cpp``):

* tap k = i * kw + j (row-major) of output pixel (ho, wo) samples the input at
  ``y = ho * stride_h - pad_h + i * dilation_h + offset[2k]``, ``x = wo * stride_w - pad_w + j * dilation_w
  + offset[2k + 1]`` (offset channel 2k is dy, 2k + 1 is dx; one such block of 2K channels per deformable group);
* bilinear interpolation in which corners outside the image read 0, and a sample with ``y <= -1``, ``y >= H``,
  ``x <= -1`` or ``x >= W`` is 0 with zero gradient for its coordinates;
* the sample is multiplied by ``mask[k]`` before the convolution with ``weight`` (C_out, C_in / groups, kh, kw);
* each image's offset and mask buffers are read as flat arrays of the OUTPUT's spatial size: when the offset
  is spatially larger than the output (the DyHead's coarser-level branch), the prefix
  ``offset[b].flatten()[:deform_groups * 2K * H_out * W_out]`` is what is used, and gradients land there only.

Equal to mmcv up to rounding (float64 ~1e-14, float32 ~1e-6 relative). The positions are mmcv's (integer base
plus offset, floored in the tensor's dtype), so a sample takes mmcv's bilinear cell and offset gradient also
where they jump (integer positions, -1, H, W). mmcv itself floors a float64 position in float32 (``floorf``), so
there a position within ~1e-7 relative of an integer may take the next cell. An ONNX export samples through
``grid_sample`` (ONNX's GridSample), which resolves positions to its normalised-coordinate rounding (~1e-6 px).
"""
from functools import lru_cache, partial
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

IntPair = Union[int, Tuple[int, int]]


@lru_cache(maxsize=64)
def _tap_positions(h_out: int, w_out: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
                   dtype: torch.dtype, device: torch.device) -> Tuple[Tensor, Tensor]:
    """Where tap k of output pixel (ho, wo) samples before its offset: rows (1, K, H_out, 1) = ho * sh - ph +
    i * dh and columns (1, K, 1, W_out) = wo * sw - pw + j * dw, k = i * kw + j. Cached: a small map's call
    costs more in building these than in sampling; read-only."""
    arange = partial(torch.arange, dtype=dtype, device=device)
    rows = (arange(h_out) * sh - ph).view(1, h_out) + (arange(kh) * dh).repeat_interleave(kw).view(kh * kw, 1)
    cols = (arange(w_out) * sw - pw).view(1, w_out) + (arange(kw) * dw).repeat(kh).view(kh * kw, 1)
    return rows.view(1, kh * kw, h_out, 1), cols.view(1, kh * kw, 1, w_out)


def _flat_prefix(t: Tensor, numel: int, name: str) -> Tensor:
    """(B, ...) → (B, numel): the first ``numel`` values of each image's buffer, in memory order of a
    contiguous tensor, as mmcv reads them."""
    per_image = t[0].numel() if t.size(0) else 0
    if per_image < numel:
        raise ValueError(f'{name} holds {per_image} values per image, the convolution reads {numel} '
                         f'(its spatial size is smaller than the output\'s)')
    return t.reshape(t.size(0), -1)[:, :numel]


def modulated_deform_conv2d_cpu(x: Tensor,
                                offset: Tensor,
                                mask: Tensor,
                                weight: Tensor,
                                bias: Optional[Tensor],
                                stride: IntPair = 1,
                                padding: IntPair = 0,
                                dilation: IntPair = 1,
                                groups: int = 1,
                                deform_groups: int = 1) -> Tensor:
    """Modulated deformable convolution, differentiable in every tensor argument.

    Args:
        x (Tensor): Input (B, C_in, H, W).
        offset (Tensor): (B, deform_groups * 2K, H_off, W_off), K = kh * kw; channel 2k is dy, 2k + 1 is dx of
            tap k. H_off * W_off >= H_out * W_out; only the flat prefix of each image is read (module docstring).
        mask (Tensor): (B, deform_groups * K, H_m, W_m), the modulation of each tap; prefix read likewise.
        weight (Tensor): (C_out, C_in / groups, kh, kw).
        bias (Tensor, optional): (C_out,).
        stride, padding, dilation (int or (int, int)): As for ``nn.Conv2d``.
        groups (int): Convolution groups.
        deform_groups (int): Groups of consecutive input channels sharing one set of offsets and masks.

    Returns:
        Tensor: (B, C_out, H_out, W_out), H_out = (H + 2 * pad_h - dilation_h * (kh - 1) - 1) // stride_h + 1.
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    b, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    if c_in != c_per_group * groups or c_out % groups or c_in % deform_groups:
        raise ValueError(f'channels do not match: input {c_in}, weight {tuple(weight.shape)}, groups {groups}, '
                         f'deform_groups {deform_groups}')
    h_out = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    w_out = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    if h_out <= 0 or w_out <= 0:
        raise ValueError(f'input {h}x{w} is too small (output would be {h_out}x{w_out})')
    k, dg = kh * kw, deform_groups
    # ONNX has no bag-of-rows operator: an export samples through GridSample instead
    exporting = torch.onnx.is_in_onnx_export()

    off = _flat_prefix(offset, dg * 2 * k * h_out * w_out, 'offset').view(b * dg, k, 2, h_out, w_out)
    mod = _flat_prefix(mask, dg * k * h_out * w_out, 'mask').reshape(b * dg, k, h_out, w_out)

    # Sampling positions in input pixels, computed as mmcv does (integer base + offset: one rounding).
    # (torch.compile traces the positions into its graph instead of calling the cache, which it cannot trace)
    positions = _tap_positions.__wrapped__ if torch.compiler.is_compiling() else _tap_positions
    base_y, base_x = positions(h_out, w_out, kh, kw, sh, sw, ph, pw, dh, dw, x.dtype, x.device)
    ys = base_y + off[:, :, 0]  # (B * dg, K, H_out, W_out)
    xs = base_x + off[:, :, 1]
    with torch.no_grad():
        # mmcv's whole-sample condition; it also zeroes the coordinate gradient of a sample at exactly -1,
        # where the in-image corner would still give a slope.
        inside = (ys > -1) & (ys < h) & (xs > -1) & (xs < w)
    modulation = mod * inside
    if exporting:
        columns = _columns_grid_sample(x, ys, xs, modulation, dg)
    else:
        columns = _columns_embedding_bag(x, ys, xs, modulation, dg)
    # columns (B, H_out * W_out, K, C_in) -> (B, groups, H_out * W_out, K * C_in / groups), index k * C' + c
    if groups > 1:
        columns = columns.view(b, h_out * w_out, k, groups, c_per_group).permute(0, 3, 1, 2, 4)
    columns = columns.reshape(b, groups, h_out * w_out, k * c_per_group)
    kernel = weight.view(groups, c_out // groups, c_per_group, k).transpose(-1, -2)
    kernel = kernel.reshape(groups, c_out // groups, k * c_per_group).transpose(-1, -2)  # (groups, K * C', C_out')
    # One product per image, the columns on the left: the kernel broadcast over the batch (not the images stacked
    # into one matrix) keeps an image's result independent of its batch, and with the columns' transposed view
    # on the right AOTAutograd (torch.compile) computed wrong gradients for the FIBER head's first block.
    out = torch.matmul(columns, kernel.expand(b, *kernel.shape))  # (B, groups, H_out * W_out, C_out / groups)
    out = out.transpose(-1, -2).reshape(b, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


def _columns_embedding_bag(x: Tensor, ys: Tensor, xs: Tensor, modulation: Tensor, dg: int) -> Tensor:
    """The modulated bilinear samples as one ``embedding_bag``: each sample is a bag of its 4 corner pixels
    (rows of the channels-last input), weighted by bilinear weight x modulation (0 for a corner outside).

    Args:
        x (Tensor): (B, C_in, H, W) input.
        ys, xs (Tensor): (B * dg, K, H_out, W_out) sampling positions in input pixels.
        modulation (Tensor): (B * dg, K, H_out, W_out) mask x whole-sample condition.
        dg (int): deformable groups.

    Returns:
        Tensor: (B, H_out * W_out, K, C_in) columns, channel c of deformable group g at g * C_in / dg + c.
    """
    b, c_in, h, w = x.shape
    n, k, h_out, w_out = ys.shape
    # one table row per (image, deformable group, pixel): (B * dg * H * W, C_in / dg)
    table = x.view(b, dg, c_in // dg, h * w).transpose(2, 3).contiguous().view(n * h * w, c_in // dg)
    # pixel-major samples (B * dg, H_out, W_out, K), so that the columns come out as the GEMM reads them
    ys, xs, modulation = (t.permute(0, 2, 3, 1) for t in (ys, xs, modulation))
    with torch.no_grad():
        y0, x0 = ys.floor(), xs.floor()
        first_row = (torch.arange(n, device=x.device) * (h * w)).view(n, 1, 1, 1)
    ly, lx = ys - y0, xs - x0  # the position's gradient flows through the fractions
    hy, hx = 1 - ly, 1 - lx
    indices, weights = [], []
    for dy, wy in ((0, hy), (1, ly)):
        for dx, wx in ((0, hx), (1, lx)):
            with torch.no_grad():
                yc, xc = y0 + dy, x0 + dx
                valid = (yc >= 0) & (yc < h) & (xc >= 0) & (xc < w)
                indices.append(first_row + (yc.clamp(0, h - 1) * w + xc.clamp(0, w - 1)).long())
            weights.append(wy * wx * valid)
    bags = torch.stack(indices, dim=-1).view(-1, 4)
    bag_weights = (torch.stack(weights, dim=-1) * modulation.unsqueeze(-1)).view(-1, 4)
    columns = F.embedding_bag(bags, table, per_sample_weights=bag_weights, mode='sum')
    columns = columns.view(b, dg, h_out * w_out, k, c_in // dg)
    return columns[:, 0] if dg == 1 else columns.permute(0, 2, 3, 1, 4).reshape(b, h_out * w_out, k, c_in)


def _columns_grid_sample(x: Tensor, ys: Tensor, xs: Tensor, modulation: Tensor, dg: int) -> Tensor:
    """:func:`_columns_embedding_bag`'s result through ``grid_sample`` (ONNX's GridSample), for export: the
    positions are resolved to grid_sample's normalised-coordinate rounding (~1e-6 px) instead of exactly."""
    b, c_in, h, w = x.shape
    n, k, h_out, w_out = ys.shape
    grid = torch.stack(((xs + 0.5) * (2.0 / w) - 1, (ys + 0.5) * (2.0 / h) - 1), dim=-1)
    sampled = F.grid_sample(x.reshape(n, c_in // dg, h, w), grid.view(n, k * h_out, w_out, 2), mode='bilinear',
                            padding_mode='zeros', align_corners=False)  # (B * dg, C_in / dg, K * H_out, W_out)
    columns = sampled.view(n, c_in // dg, k, h_out * w_out) * modulation.view(n, 1, k, h_out * w_out)
    return columns.view(b, c_in, k, h_out * w_out).permute(0, 3, 2, 1)
