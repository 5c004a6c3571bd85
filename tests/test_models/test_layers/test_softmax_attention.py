"""softmax_attention / RecomputedSoftmaxAttention: the values and gradients of plain softmax attention, the
dropout draws of torch's math path, and nothing of the (…, L, S) size kept for backward."""
import torch
import torch.nn.functional as F

from fiber_mmdet.models.layers import RecomputedSoftmaxAttention, softmax_attention


def _qkv(shape_q, shape_kv, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*shape_q, generator=g, dtype=dtype).requires_grad_()
    k = torch.randn(*shape_kv, generator=g, dtype=dtype).requires_grad_()
    v = torch.randn(*shape_kv, generator=g, dtype=dtype).requires_grad_()
    return q, k, v


def _explicit(q, k, v, additive, scale):
    return ((q * scale) @ k.transpose(-2, -1) + additive).softmax(-1) @ v


def _saved_sizes(fn):
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sizes


def test_padded_text_tokens_equal_explicit_finfo_min_softmax():
    """The fusion's text mask: bool valid tokens == the original's additive finfo.min mask."""
    q, k, v = _qkv((2, 4, 9, 8), (2, 4, 13, 8))
    valid = torch.ones(2, 1, 1, 13, dtype=torch.bool)
    valid[1, ..., 6:] = False  # padded text tokens of the second caption
    additive = torch.zeros(2, 1, 1, 13).masked_fill(~valid, torch.finfo(torch.float32).min)
    grad = torch.randn(2, 4, 9, 8, generator=torch.Generator().manual_seed(3))
    ref = _explicit(q, k, v, additive, 8 ** -0.5)
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    for dropout_p in (0., 1e-9):  # 1e-9: the recomputing path, whose dropout keeps every weight here
        torch.manual_seed(0)
        out = softmax_attention(q, k, v, attn_mask=valid, dropout_p=dropout_p)
        assert dropout_p == 0 or 'Recomputed' in type(out.grad_fn).__name__
        assert (out - ref).abs().max().item() < 1e-5
        for a, b in zip(torch.autograd.grad(out, (q, k, v), grad), ref_grads):
            assert (a - b).abs().max().item() < 1e-5
    # a padded key gets no gradient at all
    assert k.grad is None
    g_k = torch.autograd.grad(softmax_attention(q, k, v, attn_mask=valid, dropout_p=1e-9), k, grad)[0]
    assert g_k[1, :, 6:].abs().max().item() == 0


def test_fully_masked_row_is_zero_not_nan_like_sdpa():
    q, k, v = _qkv((1, 2, 3, 4), (1, 2, 5, 4))
    valid = torch.zeros(1, 1, 3, 5, dtype=torch.bool)
    valid[..., 1:, :2] = True  # query 0 sees no key
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=valid)
    out = softmax_attention(q, k, v, attn_mask=valid, dropout_p=1e-9)
    assert torch.isfinite(out).all() and out[..., 0, :].abs().max().item() == 0
    assert (out - ref).abs().max().item() < 1e-6
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_gradcheck_with_learnt_bias_and_window_mask():
    """Swin's case: 5-D (B, nW, heads, N, E), a learnt bias (heads, N, N) and a fixed mask (nW, 1, N, N)."""
    q, k, v = _qkv((2, 3, 2, 5, 4), (2, 3, 2, 5, 4), dtype=torch.double)
    bias = torch.randn(2, 5, 5, dtype=torch.double, requires_grad=True)
    mask = torch.randn(3, 1, 5, 5, dtype=torch.double)
    assert torch.autograd.gradcheck(
        lambda q, k, v, b: RecomputedSoftmaxAttention.apply(q, k, v, mask, b, 0., 0.3), (q, k, v, bias))
    ref = _explicit(q, k, v, mask + bias, 0.3)
    assert (softmax_attention(q, k, v, mask, bias, scale=0.3) - ref).abs().max().item() < 1e-12


def test_gradcheck_with_dropout():
    q, k, v = _qkv((1, 2, 4, 3), (1, 2, 6, 3), dtype=torch.double)
    valid = torch.tensor([True] * 4 + [False] * 2).view(1, 1, 1, 6)

    def seeded(q, k, v):
        torch.manual_seed(5)  # the same dropped weights in every evaluation
        return RecomputedSoftmaxAttention.apply(q, k, v, valid, None, 0.3, 0.5)

    assert torch.autograd.gradcheck(seeded, (q, k, v))


def test_dropout_draws_and_values_equal_torch_math_path():
    q, k, v = _qkv((2, 3, 16, 8), (2, 3, 24, 8))
    valid = torch.rand(2, 1, 1, 24, generator=torch.Generator().manual_seed(1)) > 0.3
    grad = torch.randn(2, 3, 16, 8)
    torch.manual_seed(7)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=valid, dropout_p=0.25)  # CPU math path
    torch.manual_seed(7)
    out = softmax_attention(q, k, v, attn_mask=valid, dropout_p=0.25)
    assert (out - ref).abs().max().item() < 1e-5
    for a, b in zip(torch.autograd.grad(out, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad)):
        assert (a - b).abs().max().item() < 1e-5


def test_nothing_of_the_probabilities_size_is_saved():
    L, S = 64, 96
    q, k, v = _qkv((1, 4, L, 8), (1, 4, S, 8))
    bias = torch.zeros(1, 4, L, S, requires_grad=True)  # needs a gradient: SDPA alone would take its math path
    _, sdpa_sizes = _saved_sizes(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=0.1))
    assert sum(sdpa_sizes) > 3 * 4 * L * S  # probabilities, noise, dropped probabilities
    valid = torch.ones(1, 1, 1, S, dtype=torch.bool)
    _, sizes = _saved_sizes(lambda: softmax_attention(q, k, v, attn_mask=valid, dropout_p=0.1))
    floats = [n for n in sizes if n != 4 * L * S]  # the one (…, L, S) tensor saved is the bool keep mask
    assert len(sizes) - len(floats) == 1 and max(floats) == 4 * S * 8
    _, sizes = _saved_sizes(lambda: softmax_attention(q, k, v, attn_bias=bias[..., :1, :]))
    assert max(sizes) == 4 * S * 8


def test_backward_in_slices_equals_whole(monkeypatch):
    """The backward recomputes the probabilities a slice of the widest leading axis at a time."""
    import sys
    module = sys.modules['fiber_mmdet.models.layers.softmax_attention']
    q, k, v = _qkv((2, 5, 3, 6, 4), (2, 5, 3, 7, 4), dtype=torch.double)
    bias = torch.randn(3, 6, 7, dtype=torch.double, requires_grad=True)
    mask = torch.randn(5, 1, 6, 7, dtype=torch.double)
    grad = torch.randn(2, 5, 3, 6, 4, dtype=torch.double)

    def grads():
        out = RecomputedSoftmaxAttention.apply(q, k, v, mask, bias, 0., 0.3)
        return torch.autograd.grad(out, (q, k, v, bias), grad)

    whole = grads()
    monkeypatch.setattr(module, 'BACKWARD_CHUNK', 60)  # 5 slices of the window axis
    for a, b in zip(grads(), whole):
        assert (a - b).abs().max().item() < 1e-12
    assert torch.autograd.gradcheck(
        lambda q, k, v, b: RecomputedSoftmaxAttention.apply(q, k, v, mask, b, 0., 0.3), (q, k, v, bias))
