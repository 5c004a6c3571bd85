import copy

import pytest
import torch

from fiber_mmdet.models import FusionSwinTransformer
from fiber_mmdet.models.layers import CachedShiftWindowMSA

SMALL = dict(arch=dict(embed_dims=16, depths=[2, 2, 4, 2], num_heads=[1, 2, 2, 4]), window_size=7,
             text_dims=24, fusion_blocks=((2, 2), (2, 3), (3, 0), (3, 1)), drop_path_rate=0.)


def _randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def _inputs(B=2, H=96, W=128, T=11, D=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[-1, 7:] = 0
    return torch.randn(B, 3, H, W, generator=g), torch.randn(B, T, D, generator=g), mask


def test_output_shapes_and_strides():
    m = FusionSwinTransformer(**SMALL).eval()
    x, text, mask = _inputs()
    outs = m(x, text, mask)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 12, 16), (2, 64, 6, 8), (2, 128, 3, 4)]


def test_sdpa_equals_plain_attention():
    fast = _randomise(FusionSwinTransformer(**SMALL)).eval()
    plain = FusionSwinTransformer(**SMALL, use_sdpa=False).eval()
    plain.load_state_dict(fast.state_dict())
    x, text, mask = _inputs(H=100, W=90)  # not a window multiple: padding + shift masks are exercised
    with torch.no_grad():
        for a, b in zip(fast(x, text, mask), plain(x, text, mask)):
            assert (a - b).abs().max().item() < 1e-4 * b.abs().max().item()


def test_sdpa_equals_plain_attention_in_training_gradients_included():
    """Training on the CPU runs the recomputing attention (the relative position bias needs a gradient)."""
    fast = _randomise(FusionSwinTransformer(**SMALL)).train()
    plain = FusionSwinTransformer(**SMALL, use_sdpa=False).train()
    plain.load_state_dict(fast.state_dict())
    x, text, mask = _inputs(H=100, W=90)
    for model in (fast, plain):
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in model(x, text, mask)).backward()
    grads = dict(plain.named_parameters())
    for name, p in fast.named_parameters():
        ref = grads[name].grad
        assert (p.grad - ref).abs().max().item() <= 1e-4 * ref.abs().max().item() + 1e-7, name


def test_padded_text_tokens_are_ignored():
    m = _randomise(FusionSwinTransformer(**SMALL)).eval()
    x, text, mask = _inputs()
    changed = text.clone()
    changed[1, 7:] += 5.0  # only padded positions of sample 1
    with torch.no_grad():
        a, b = m(x, text, mask), m(x, changed, mask)
    for oa, ob in zip(a, b):
        assert torch.allclose(oa, ob, atol=1e-6)


def test_split_forward_equals_full_forward_and_text_matters():
    m = _randomise(FusionSwinTransformer(**SMALL)).eval()
    x, text, mask = _inputs()
    with torch.no_grad():
        full = m(x, text, mask)
        state = m.forward_image_only(x)
        assert state.position == 2 + 2 + 2  # stages 0, 1 and blocks 0-1 of stage 2 are text-free
        split, _ = m.forward_fused(state, text, mask)
        other, _ = m.forward_fused(state, text.flip(0), mask.flip(0))  # state is reusable
    for a, b in zip(full, split):
        assert torch.equal(a, b)
    assert not torch.allclose(full[-1], other[-1])


def test_text_layer_pairing_sees_pre_step_states():
    m = _randomise(FusionSwinTransformer(**SMALL)).eval()
    x, text, mask = _inputs()
    seen = []

    def text_layer(step, hidden, image_tokens):
        seen.append((step, image_tokens.shape))
        return hidden + 1.0

    with torch.no_grad():
        _, final_text = m.forward_fused(m.forward_image_only(x), text, mask, text_layer)
    # stage-2 tokens of a 96x128 image (6 x 8, 64 wide), then stage-3 tokens (3 x 4, 128 wide)
    assert seen == [(0, (2, 48, 64)), (1, (2, 48, 64)), (2, (2, 12, 128)), (3, (2, 12, 128))]
    assert torch.allclose(final_text, text + 4.0)


def test_gates_start_at_zero_so_text_has_no_effect():
    m = FusionSwinTransformer(**SMALL)
    m.init_weights()
    m.eval()
    x, text, mask = _inputs()
    with torch.no_grad():
        with_text, without = m(x, text, mask), m(x)
    for a, b in zip(with_text, without):
        assert torch.equal(a, b)


def test_activation_checkpointing_same_values_and_grads():
    a = _randomise(FusionSwinTransformer(**SMALL))
    b = FusionSwinTransformer(**SMALL, with_cp=True)
    b.load_state_dict(a.state_dict())
    x, text, mask = _inputs(B=1)
    x.requires_grad_(True)
    outs_a = a(x, text, mask)
    sum(o.sum() for o in outs_a).backward()
    grad_a = x.grad.clone()
    x.grad = None
    outs_b = b(x, text, mask)
    sum(o.sum() for o in outs_b).backward()
    assert all(torch.allclose(p, q) for p, q in zip(outs_a, outs_b))
    assert torch.allclose(grad_a, x.grad, atol=1e-5)


def test_frozen_stages():
    m = FusionSwinTransformer(**SMALL, frozen_stages=1)
    m.train()
    assert not any(p.requires_grad for p in m.patch_embed.parameters())
    assert not any(p.requires_grad for p in m.stages[0].parameters())
    assert all(p.requires_grad for p in m.stages[1].parameters())
    assert not m.stages[0].training and m.stages[1].training


@pytest.mark.parametrize('blocks, message', [
    (((2, 4),), 'does not exist'),
    (((3, 0), (2, 3)), 'execution order'),
    (((2, 3), (2, 3)), 'listed twice'),
])
def test_bad_fusion_blocks_are_rejected(blocks, message):
    cfg = copy.deepcopy(SMALL)
    cfg['fusion_blocks'] = blocks
    with pytest.raises(ValueError, match=message):
        FusionSwinTransformer(**cfg)


def test_shift_mask_is_cached():
    m = FusionSwinTransformer(**SMALL).eval()
    attn = m.stages[1].blocks[1].attn
    assert isinstance(attn, CachedShiftWindowMSA)
    mask1 = attn.get_attn_mask((14, 14), 7, 3)
    mask2 = attn.get_attn_mask((14, 14), 7, 3)
    assert mask1 is mask2 and mask1.shape == (4, 49, 49)
    assert set(mask1.unique().tolist()) == {0.0, -100.0}


def test_shift_mask_cache_is_bounded_shared_and_changes_no_output():
    """Many input sizes (multi-scale training, a demo): the backbone's one mask store stays at its bound, least
    recently used dropped, and a size whose masks were dropped gives the same features as when they were
    first built."""
    from mmpretrain.models.utils.attention import ShiftWindowMSA
    m = _randomise(FusionSwinTransformer(**SMALL, attn_mask_cache_size=5)).eval()
    assert all(b.attn.mask_cache is m.attn_mask_cache for s in m.stages for b in s.blocks)
    x, text, mask = _inputs(B=1, H=64, W=64)
    with torch.no_grad():
        first = m(x, text, mask)
        assert len(m.attn_mask_cache) == 3  # one per padded size of the shifted blocks: 21², 14², 7² (twice)
        first_keys = list(m.attn_mask_cache)
        attn = m.stages[0].blocks[1].attn
        for k in range(4, 20):  # 16 more padded sizes, as a multi-scale run or a demo meets them
            attn.get_attn_mask((7 * k, 7 * (k + 1)), 7, 3, 'cpu')
            assert len(m.attn_mask_cache) <= 5
        m(torch.randn(1, 3, 100, 160), text, mask)
        assert len(m.attn_mask_cache) == 5
        assert first_keys[0] == ((21, 21), 7, 3, 'cpu') and first_keys[0] not in m.attn_mask_cache
        again = m(x, text, mask)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert torch.equal(attn.get_attn_mask((21, 28), 7, 3, 'cpu'), ShiftWindowMSA.get_attn_mask((21, 28), 7, 3, 'cpu'))
    with pytest.raises(ValueError, match='max_entries >= 1'):
        FusionSwinTransformer(**SMALL, attn_mask_cache_size=0)


def test_official_swin_checkpoint_through_init_cfg(tmp_path):
    """An official-layout Swin checkpoint (concat PatchMerging, `layers.`, `mlp.fc1`, final `norm`, `head`)
    loads through init_cfg and reproduces the weights it came from."""
    from fiber_mmdet.utils.fiber_checkpoint import _UNFOLD_FROM_CONCAT
    src = _randomise(FusionSwinTransformer(**SMALL))
    official = {}
    for k, v in src.state_dict().items():
        if '.i2t.' in k or k.endswith('relative_position_index'):
            continue
        o = (k.replace('patch_embed.projection', 'patch_embed.proj').replace('stages.', 'layers.')
             .replace('attn.w_msa.', 'attn.').replace('ffn.layers.0.0', 'mlp.fc1').replace('ffn.layers.1', 'mlp.fc2')
             .replace('norm3.', 'norm.'))
        if 'downsample' in k and k.endswith(('reduction.weight', 'norm.weight', 'norm.bias')):
            *lead, four_c = v.shape
            c = four_c // 4
            unfold = v.reshape(*lead, c, 4)  # index c * 4 + k  ->  concat index g * C + c
            inverse = [_UNFOLD_FROM_CONCAT.index(g) for g in range(4)]
            v = unfold[..., inverse].transpose(-1, -2).reshape(*lead, four_c)
        official[o] = v
    official['head.weight'] = torch.zeros(10, 128)
    path = tmp_path / 'swin_official.pth'
    torch.save({'model': official}, path)
    dst = FusionSwinTransformer(**SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    want = src.state_dict()
    for k, v in dst.state_dict().items():
        if '.i2t.' in k:
            continue
        assert torch.equal(v, want[k]), k
    assert all(b.i2t.gate.item() == 0 for s in dst.stages for b in s.blocks if b.is_fused)
