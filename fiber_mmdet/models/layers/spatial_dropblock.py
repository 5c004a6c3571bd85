"""DropBlock as FIBER's FPN uses it."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdet.registry import MODELS


@MODELS.register_module()
class SpatialDropBlock(nn.Module):
    """Drop square blocks of a feature map, the same blocks for every channel, during training only.

    Block centres are drawn per image and position with probability ``drop_prob / block_size**2`` over the
    whole map; each centre zeroes a ``block_size`` × ``block_size`` square (max-pooling the centre mask); the
    kept features are rescaled by ``numel / kept``. (mmdet's ``DropBlock`` draws per channel, inside the valid
    region, with another rate and a warm-up; this is the original FIBER/GLIP variant.)

    Args:
        drop_prob (float): Expected dropped fraction before overlaps (FIBER: 0.3).
        block_size (int): Odd block size (FIBER: 3).
    """

    def __init__(self, drop_prob: float = 0.3, block_size: int = 3) -> None:
        super().__init__()
        if block_size % 2 != 1:
            raise ValueError(f'block_size must be odd, got {block_size}')
        if not 0. <= drop_prob < 1.:
            raise ValueError(f'drop_prob must be in [0, 1), got {drop_prob}')
        self.drop_prob = drop_prob
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        if not self.training or self.drop_prob == 0.:
            return x
        gamma = self.drop_prob / self.block_size**2
        centres = (torch.rand(x.shape[0], 1, *x.shape[2:], device=x.device) < gamma).to(x.dtype)
        keep = 1. - F.max_pool2d(centres, self.block_size, stride=1, padding=self.block_size // 2)
        # the kept count is summed in float32: in float16 it overflows (65504) from about 6 images of
        # 800x1333 at stride 4, and numel / inf would zero the whole map
        scale = keep.numel() / keep.sum(dtype=torch.float32).clamp(min=1.)
        return x * keep * scale.to(x.dtype)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(drop_prob={self.drop_prob}, block_size={self.block_size})'
