"""Swin's window attention reaches SDPA's fused CPU kernel, shifted windows and unshifted alike, and equals the
plain attention: a 3-D bias or a strided mask would send it to the unfused math path (2-4x slower)."""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from fiber_mmdet.models.layers import CachedShiftWindowMSA, SDPAWindowMSA


def _attention(use_sdpa: bool, shift: bool) -> CachedShiftWindowMSA:
    torch.manual_seed(0)
    attn = CachedShiftWindowMSA(embed_dims=32, num_heads=4, window_size=6, shift_size=3 if shift else 0,
                                pad_small_map=True, window_msa=SDPAWindowMSA, use_sdpa=use_sdpa).eval()
    with torch.no_grad():  # a learnt, non-zero relative position bias, as in a trained Swin
        attn.w_msa.relative_position_bias_table.normal_()
    return attn


@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('shift', [False, True], ids=['unshifted', 'shifted'])
def test_windows_run_the_fused_kernel_and_equal_plain_attention(shift, batch):
    x = torch.randn(batch, 14 * 17, 32, generator=torch.Generator().manual_seed(1))  # padded to 18 x 18
    fused, plain = _attention(True, shift), _attention(False, shift)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        out = fused(x, (14, 17))
    kernels = {e.key for e in prof.key_averages()}
    assert 'aten::_scaled_dot_product_flash_attention_for_cpu' in kernels
    assert 'aten::_scaled_dot_product_attention_math' not in kernels
    with torch.no_grad():
        expected = plain(x, (14, 17))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
