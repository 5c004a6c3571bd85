import torch

from fiber_mmdet.models.layers import SpatialDropBlock


def test_identity_in_eval_and_blocks_shared_across_channels():
    drop = SpatialDropBlock(drop_prob=0.3, block_size=3)
    x = torch.ones(4, 8, 40, 50)
    assert drop.eval()(x) is x
    torch.manual_seed(0)
    y = drop.train()(x)
    zero = y == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same spatial blocks for every channel
    # kept values are rescaled so the expected sum is preserved
    assert abs(y.sum().item() / x.sum().item() - 1.0) < 1e-5
    # each centre zeroes a 3x3 block: dropped fraction close to 1 - (1 - 0.3/9)^9 away from the borders
    frac = zero[:, 0, 2:-2, 2:-2].float().mean().item()
    assert abs(frac - (1 - (1 - 0.3 / 9)**9)) < 0.03


def test_float16_map_larger_than_float16_max_is_kept_and_rescaled_as_in_float32():
    """6 images of 800x1333 at stride 4 (200x334): 400,800 positions per channel, more than float16 counts
    (65504). The kept count is summed in float32: the output is not zeroed and equals the float32 computation
    (same blocks: the centres are drawn in float32 whatever the input dtype) to float16 rounding."""
    drop = SpatialDropBlock(drop_prob=0.3, block_size=3).train()
    x = torch.rand(6, 1, 200, 334, generator=torch.Generator().manual_seed(0)) + 0.5
    torch.manual_seed(1)
    expected = drop(x)
    torch.manual_seed(1)
    y = drop(x.half())
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all() and (y != 0).float().mean().item() > 0.5
    assert torch.allclose(y.float(), expected, rtol=2e-3, atol=0)
