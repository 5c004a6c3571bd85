"""A modulated deformable convolution (DCNv2) for CPU tensors, equal to mmcv's CPU kernel, built from
``grid_sample`` (bilinear im2col) and one matrix product per group.

mmcv's CPU ``ModulatedDeformConv2dFunction`` is a scalar loop per sample, forward and (much slower) backward;
``F.grid_sample`` has vectorised CPU kernels for the forward and for both gradients (input and grid), so the
offset and mask gradients come from autograd. The semantics reproduced (mmcv ``modulated_deform_conv.cpp``):

* tap k = i * kw + j (row-major) of output pixel (ho, wo) samples the input at
  ``y = ho * stride_h - pad_h + i * dilation_h + offset[2k]``, ``x = wo * stride_w - pad_w + j * dilation_w
  + offset[2k + 1]`` (offset channel 2k is dy, 2k + 1 is dx; one such block of 2K channels per deformable group);
* bilinear interpolation in which corners outside the image read 0, and a sample with ``y <= -1``, ``y >= H``,
  ``x <= -1`` or ``x >= W`` is 0 with zero gradient for its coordinates;
* the sample is multiplied by ``mask[k]`` before the convolution with ``weight`` (C_out, C_in / groups, kh, kw);
* each image's offset and mask buffers are read as flat arrays of the OUTPUT's spatial size: when the offset
  is spatially larger than the output (the DyHead's coarser-level branch), the prefix
  ``offset[b].flatten()[:deform_groups * 2K * H_out * W_out]`` is what is used, and gradients land there only.

Equal to mmcv up to rounding (float64 ~1e-14, float32 ~1e-6 relative). Where the bilinear cell changes (integer
positions, -1, H, W) the offset gradient jumps, so there the position must be exactly mmcv's: it is for
positions that are integers or halves (e.g. integer offsets), which survive grid_sample's normalised-coordinate
round trip exactly; any other position is rounded to grid_sample's resolution (~1e-6 px in float32, ~1e-15 px
in float64), so a float32 position closer than that to a cell border may take the neighbouring cell's slope.
mmcv itself floors a float64 position in float32 (``floorf``), so there a position within ~1e-7 relative of an
integer takes the next cell.
"""
from functools import lru_cache, partial
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

IntPair = Union[int, Tuple[int, int]]


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


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


def _channel_chunks(images: int, channels: int) -> int:
    """How many pieces to cut each image's channels into: enough for one per thread, dividing ``channels``."""
    chunks = max(1, torch.get_num_threads() // images)
    while channels % chunks:
        chunks -= 1
    return chunks


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
    # an ONNX export traces sizes as tensors: no power-of-two padding (its size would become a constant) and no
    # channel chunks (a thread count is no property of the graph); positions are then resolved to grid_sample's
    # normalised-coordinate rounding (~1e-6 px) instead of exactly
    exporting = torch.onnx.is_in_onnx_export()

    off = _flat_prefix(offset, dg * 2 * k * h_out * w_out, 'offset').view(b * dg, k, 2, h_out, w_out)
    mod = _flat_prefix(mask, dg * k * h_out * w_out, 'mask').view(b, dg, 1, k, h_out * w_out)

    # Sampling positions in input pixels, computed as mmcv does (integer base + offset: one rounding).
    # (torch.compile traces the positions into its graph instead of calling the cache, which it cannot trace)
    positions = _tap_positions.__wrapped__ if torch.compiler.is_compiling() else _tap_positions
    base_y, base_x = positions(h_out, w_out, kh, kw, sh, sw, ph, pw, dh, dw, x.dtype, x.device)
    ys = base_y + off[:, :, 0]  # (B * dg, K, H_out, W_out)
    xs = base_x + off[:, :, 1]
    with torch.no_grad():
        # mmcv's whole-sample condition; it also zeroes the coordinate gradient of a sample at exactly -1,
        # where grid_sample would still see the in-image corner's slope.
        inside = (ys > -1) & (ys < h) & (xs > -1) & (xs < w)

    # grid_sample's pixel coordinate is (g + 1) * size / 2 - 0.5; with a power-of-two size the round trip is
    # exact for integer and half-integer positions, so a sample that lands exactly on a pixel takes the same
    # bilinear cell (and the same coordinate gradient) as in mmcv. The zero padding reads like outside.
    h2, w2 = (h, w) if exporting else (_next_power_of_two(h), _next_power_of_two(w))
    if not exporting and (h2, w2) != (h, w):
        padded = x.new_zeros(b, c_in, h2, w2)  # a sliced copy: F.pad's CPU kernel is slow on small maps
        padded[:, :, :h, :w] = x
        x = padded
    grid = torch.stack(((xs + 0.5) * (2.0 / w2) - 1, (ys + 0.5) * (2.0 / h2) - 1), dim=-1)
    # grid_sample's CPU kernels run one thread per image; split the channels so that a small batch keeps
    # every thread busy (the sampling positions are shared, their gradient is summed over the chunks).
    # (a thread count is no property of an exported or compiled graph either)
    chunks = 1 if exporting or torch.compiler.is_compiling() else _channel_chunks(b * dg, c_in // dg)
    grid = grid.view(b * dg, 1, k * h_out, w_out, 2).expand(-1, chunks, -1, -1, -1)
    sampled = F.grid_sample(
        x.reshape(b * dg * chunks, c_in // (dg * chunks), h2, w2),
        grid.reshape(b * dg * chunks, k * h_out, w_out, 2),
        mode='bilinear',
        padding_mode='zeros',
        align_corners=False)  # (B * dg * chunks, C_in / (dg * chunks), K * H_out, W_out)
    modulation = mod * inside.view(b, dg, 1, k, h_out * w_out)
    columns = sampled.view(b, dg, c_in // dg, k, h_out * w_out)
    if torch.is_grad_enabled() and modulation.requires_grad:
        columns = columns * modulation  # the mask's gradient needs the samples
    else:
        columns = columns.mul_(modulation)  # saves a (B, C_in * K, H_out * W_out) buffer, e.g. in eval
    # rows c * K + k, as weight.flatten(1) orders them
    columns = columns.view(b, groups, c_per_group * k, h_out * w_out)
    out = torch.matmul(weight.view(groups, c_out // groups, c_per_group * k), columns)
    out = out.view(b, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out
