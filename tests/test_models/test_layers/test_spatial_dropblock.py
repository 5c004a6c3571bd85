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
