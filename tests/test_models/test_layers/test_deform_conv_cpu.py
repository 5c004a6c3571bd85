"""The CPU deformable convolution (embedding_bag sampling) equals mmcv's CPU kernel, forward and in every gradient
(float64 to 1e-10, float32 to 1e-5), and the head's layer uses it on CPU tensors."""
from typing import List, Optional

import pytest
import torch
import torch.nn.functional as F
from mmcv.ops import ModulatedDeformConv2d
from mmcv.ops.modulated_deform_conv import modulated_deform_conv2d as mmcv_deform_conv2d
from torch import Tensor

from fiber_mmdet.models.layers import FP32ModulatedDeformConv2d, modulated_deform_conv2d_cpu

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _output_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _inputs(b=2, c_in=4, c_out=6, h=7, w=9, k=3, stride=1, pad=1, dil=1, groups=1, dg=1, dtype=torch.float64,
            offset_scale=1.5, integer_offsets=False, offset_hw=None, bias=True, seed=0) -> List[Optional[Tensor]]:
    g = torch.Generator().manual_seed(seed)
    h_out, w_out = _output_size(h, k, stride, pad, dil), _output_size(w, k, stride, pad, dil)
    h_off, w_off = offset_hw or (h_out, w_out)
    x = torch.randn(b, c_in, h, w, generator=g, dtype=dtype)
    offset = torch.randn(b, dg * 2 * k * k, h_off, w_off, generator=g, dtype=dtype) * offset_scale
    if integer_offsets:
        offset = offset.round()
    mask = torch.rand(b, dg * k * k, h_off, w_off, generator=g, dtype=dtype)
    weight = torch.randn(c_out, c_in // groups, k, k, generator=g, dtype=dtype)
    bias_t = torch.randn(c_out, generator=g, dtype=dtype) if bias else None
    grad_out = torch.randn(b, c_out, h_out, w_out, generator=g, dtype=dtype)
    return [x, offset, mask, weight, bias_t, grad_out]


def _run(fn, tensors, stride, pad, dil, groups, dg) -> List[Optional[Tensor]]:
    """(output, grad x, grad offset, grad mask, grad weight, grad bias) of ``fn``."""
    *inputs, grad_out = tensors
    leaves = [None if t is None else t.clone().requires_grad_() for t in inputs]
    out = fn(*leaves, stride, pad, dil, groups, dg)
    out.backward(grad_out)
    return [out.detach()] + [None if t is None else t.grad for t in leaves]


def _assert_equal_to_mmcv(dtype=torch.float64, stride=1, pad=1, dil=1, groups=1, dg=1, **kw) -> None:
    tensors = _inputs(stride=stride, pad=pad, dil=dil, groups=groups, dg=dg, dtype=dtype, **kw)
    expected = _run(mmcv_deform_conv2d, tensors, stride, pad, dil, groups, dg)
    got = _run(modulated_deform_conv2d_cpu, tensors, stride, pad, dil, groups, dg)
    tol = TOLERANCE[dtype]
    for name, e, a in zip(('output', 'grad_input', 'grad_offset', 'grad_mask', 'grad_weight', 'grad_bias'),
                          expected, got):
        if e is None:
            assert a is None, name
            continue
        assert e.abs().max() > 0, name  # a real value is compared
        torch.testing.assert_close(a, e, rtol=tol, atol=tol, msg=lambda m: f'{name}: {m}')


CASES = {
    'stride1': dict(),
    'stride2': dict(stride=2, h=9, w=12),
    'no_padding': dict(pad=0),
    'padding2_dilation2': dict(pad=2, dil=2, h=8, w=11),
    'dilation2_stride2': dict(pad=1, dil=2, stride=2, h=10, w=9),
    'groups2': dict(groups=2, c_in=4, c_out=6),
    'deform_groups2': dict(dg=2, c_in=6),
    'groups2_deform_groups2': dict(groups=2, dg=2, c_in=8, c_out=4),
    'batch3_kernel1': dict(b=3, k=1, pad=0),
    'kernel5': dict(k=5, pad=2, h=9, w=10),
    'power_of_two_size': dict(h=8, w=16),
    'no_bias': dict(bias=False),
    # samples far outside the image: whole-sample zeros and out-of-range corners
    'large_offsets': dict(offset_scale=6.0),
    # samples exactly on pixels, on -1 and on H / W: the bilinear cell (and the offset gradient) must be mmcv's
    'integer_offsets': dict(offset_scale=2.0, integer_offsets=True),
    'integer_offsets_stride2': dict(offset_scale=2.0, integer_offsets=True, stride=2, h=11, w=10),
    # the DyHead's coarser-level branch: offset/mask of the finer level, read as a flat prefix per image
    'offset_larger_than_output': dict(h=5, w=6, offset_hw=(9, 11)),
    'offset_larger_than_output_integer': dict(h=5, w=6, offset_hw=(10, 12), integer_offsets=True),
    'offset_larger_stride2': dict(h=9, w=12, stride=2, offset_hw=(9, 12)),
}


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32], ids=['float64', 'float32'])
@pytest.mark.parametrize('case', list(CASES))
def test_forward_and_all_gradients_equal_mmcv(case, dtype):
    _assert_equal_to_mmcv(dtype=dtype, **CASES[case])


def test_gradient_of_a_larger_offset_lands_in_the_flat_prefix_only():
    x, offset, mask, weight, bias, grad_out = _inputs(b=2, h=4, w=5, offset_hw=(8, 10))
    _, _, g_off, g_mask, _, _ = _run(modulated_deform_conv2d_cpu, [x, offset, mask, weight, bias, grad_out], 1, 1,
                                     1, 1, 1)
    used_offset, used_mask = 18 * 4 * 5, 9 * 4 * 5
    for grad, used in ((g_off, used_offset), (g_mask, used_mask)):
        flat = grad.flatten(1)
        assert (flat[:, :used] != 0).float().mean() > 0.5
        assert torch.equal(flat[:, used:], torch.zeros_like(flat[:, used:]))


def test_non_contiguous_offset_slice_as_in_the_dyhead():
    """DyConv passes ``offset_mask[:, :18]``, a slice whose images are contiguous but not the batch."""
    x, _, _, weight, bias, grad_out = _inputs(b=2, h=6, w=7)
    offset_mask = torch.randn(2, 27, 6, 7, dtype=torch.float64)
    offset, mask = offset_mask[:, :18], offset_mask[:, 18:].sigmoid()
    assert not offset.is_contiguous()
    tensors = [x, offset, mask, weight, bias, grad_out]
    expected = _run(mmcv_deform_conv2d, tensors, 1, 1, 1, 1, 1)
    got = _run(modulated_deform_conv2d_cpu, tensors, 1, 1, 1, 1, 1)
    for e, a in zip(expected, got):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def test_zero_offsets_and_unit_mask_are_a_plain_convolution():
    x, offset, mask, weight, bias, _ = _inputs(b=2, h=7, w=9, stride=2, pad=1, dil=2)
    out = modulated_deform_conv2d_cpu(x, torch.zeros_like(offset), torch.ones_like(mask), weight, bias, 2, 1, 2)
    torch.testing.assert_close(out, F.conv2d(x, weight, bias, stride=2, padding=1, dilation=2), rtol=1e-12,
                               atol=1e-12)


def test_samples_at_exactly_minus_one_are_zero_with_zero_offset_gradient():
    """mmcv's condition ``y <= -1`` zeroes the whole sample, also the slope towards the in-image pixel that
    grid_sample alone would give."""
    x, _, mask, weight, bias, grad_out = _inputs(b=1, h=5, w=6, pad=1)
    # every tap of every output pixel samples row -1: dy = -1 - (ho - 1 + i), dx = 0
    rows = torch.arange(5, dtype=torch.float64).view(1, 5, 1) - 1 + torch.arange(3).repeat_interleave(3).view(9, 1, 1)
    offset = torch.zeros(1, 9, 2, 5, 6, dtype=torch.float64)
    offset[:, :, 0] = -1 - rows
    offset = offset.view(1, 18, 5, 6)
    out, g_x, g_off, g_mask, _, _ = _run(modulated_deform_conv2d_cpu, [x, offset, mask, weight, bias, grad_out], 1,
                                         1, 1, 1, 1)
    assert torch.equal(out, bias.view(1, -1, 1, 1).expand_as(out))
    for grad in (g_x, g_off, g_mask):
        assert torch.equal(grad, torch.zeros_like(grad))
    expected = _run(mmcv_deform_conv2d, [x, offset, mask, weight, bias, grad_out], 1, 1, 1, 1, 1)
    assert torch.equal(expected[2], torch.zeros_like(expected[2]))


def test_offset_smaller_than_the_output_is_an_error():
    x, offset, mask, weight, bias, _ = _inputs(h=6, w=6, offset_hw=(5, 6))
    with pytest.raises(ValueError, match='offset holds'):
        modulated_deform_conv2d_cpu(x, offset, mask, weight, bias, 1, 1)


def _layer(**kw) -> FP32ModulatedDeformConv2d:
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(8, 6, 3, padding=1, **kw)
    layer.bias.data.normal_()
    layer.__class__ = FP32ModulatedDeformConv2d
    return layer


@pytest.mark.parametrize('stride', [1, 2])
def test_layer_on_cpu_equals_mmcv_kernel(stride):
    layer = _layer(stride=stride)
    x = torch.randn(2, 8, 9, 10)
    h_out, w_out = _output_size(9, 3, stride, 1, 1), _output_size(10, 3, stride, 1, 1)
    offset, mask = torch.randn(2, 18, h_out, w_out), torch.rand(2, 9, h_out, w_out)
    fast = layer(x, offset, mask)
    layer.use_mmcv_cpu_kernel = True
    torch.testing.assert_close(fast, layer(x, offset, mask), rtol=1e-5, atol=1e-5)


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for backward while ``fn()`` runs (each storage counted once)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


def test_layer_recomputes_its_columns_in_backward_with_the_same_gradients():
    layer = _layer()
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    offset = (2 * torch.randn(2, 18, 12, 12)).requires_grad_()
    mask = torch.rand(2, 9, 12, 12, requires_grad=True)
    results = {}
    for recompute in (True, False):
        layer.recompute_columns = recompute
        out, saved = _saved_bytes(lambda: layer(x, offset, mask))
        grads = torch.autograd.grad(out.square().sum(), (x, offset, mask, layer.weight, layer.bias))
        results[recompute] = out, grads, saved
    (out_r, grads_r, saved_r), (out_k, grads_k, saved_k) = results[True], results[False]
    assert torch.equal(out_r, out_k)
    for a, b in zip(grads_r, grads_k):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # the kept columns are C_in * K = 72 times the input; recomputing keeps the inputs and the weights only
    columns = 2 * 8 * 9 * 12 * 12 * 4
    inputs = sum(t.numel() * 4 for t in (x, offset, mask, layer.weight, layer.bias))
    assert saved_k > columns > saved_r and saved_r <= inputs


def test_layer_keeps_mmcv_state_dict():
    mmcv_layer = ModulatedDeformConv2d(8, 6, 3, padding=1)
    layer = _layer()
    assert list(layer.state_dict()) == list(mmcv_layer.state_dict()) == ['weight', 'bias']
    layer.load_state_dict(mmcv_layer.state_dict())
    assert torch.equal(layer.weight, mmcv_layer.weight)


def test_layer_under_bf16_autocast_returns_the_float32_result():
    layer = _layer()
    x = torch.randn(2, 8, 9, 10)
    offset_mask = torch.randn(2, 27, 9, 10)
    expected = layer(x, offset_mask[:, :18], offset_mask[:, 18:].sigmoid())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        # as in the head: the inputs arrive in bfloat16 from autocast convolutions
        out = layer(x.bfloat16(), offset_mask[:, :18].bfloat16(), offset_mask[:, 18:].sigmoid().bfloat16())
        out_fp32_inputs = layer(x, offset_mask[:, :18], offset_mask[:, 18:].sigmoid())
    assert out.dtype == out_fp32_inputs.dtype == torch.float32
    assert torch.equal(out_fp32_inputs, expected)
    # bfloat16 inputs are cast up, not the arithmetic down: the result equals the float32 one on those inputs
    torch.testing.assert_close(
        out, layer(x.bfloat16().float(), offset_mask[:, :18].bfloat16().float(),
                   offset_mask[:, 18:].sigmoid().bfloat16().float()), rtol=0, atol=0)


def test_constant_offset_and_mask_input_and_weight_gradients_equal_mmcv():
    """With offset and mask constant (and under no_grad) the samples are modulated in place."""
    x, offset, mask, weight, bias, grad_out = _inputs(b=2, h=7, w=9)
    results = []
    for fn in (mmcv_deform_conv2d, modulated_deform_conv2d_cpu):
        x_, w_ = x.clone().requires_grad_(), weight.clone().requires_grad_()
        out = fn(x_, offset, mask, w_, bias, 1, 1)
        out.backward(grad_out)
        with torch.no_grad():
            no_grad_out = fn(x, offset, mask, weight, bias, 1, 1)
        results.append((out.detach(), no_grad_out, x_.grad, w_.grad))
    for e, a in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('threads', [2, 3])
def test_several_threads_give_mmcv_result(threads):
    """The bags are sampled in parallel: a single image (one and two deformable groups) on 2 and 3 threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _assert_equal_to_mmcv(b=1, c_in=4, dg=1)
        _assert_equal_to_mmcv(b=1, c_in=8, dg=2, offset_hw=(9, 11), h=5, w=6)
    finally:
        torch.set_num_threads(previous)


def test_an_image_gives_the_same_result_alone_and_in_a_batch():
    """The prediction paths batch images differently (the text-free reuse runs several images per forward, the
    plain path one): an image's output must not depend on its batch, bit for bit."""
    g = torch.Generator().manual_seed(0)
    x, offset = torch.randn(3, 16, 12, 16, generator=g), torch.randn(3, 18, 12, 16, generator=g)
    mask, weight = torch.rand(3, 9, 12, 16, generator=g), torch.randn(8, 16, 3, 3, generator=g)
    with torch.no_grad():
        batch = modulated_deform_conv2d_cpu(x, offset, mask, weight, None, 1, 1)
        alone = [modulated_deform_conv2d_cpu(x[i:i + 1], offset[i:i + 1], mask[i:i + 1], weight, None, 1, 1)
                 for i in range(3)]
    assert torch.equal(batch, torch.cat(alone))
