"""mmcv's modulated deformable convolution, always computed in float32 (FIBER's AMP recipe, spec §9)."""
import torch
from mmcv.ops.modulated_deform_conv import ModulatedDeformConv2d
from torch import Tensor


class FP32ModulatedDeformConv2d(ModulatedDeformConv2d):
    """:class:`mmcv.ops.ModulatedDeformConv2d` that leaves autocast and computes in float32.

    The original trains with AMP but forces the DyHead's deformable convolutions to fp32 (their sampling
    offsets lose too much in half precision; mmcv's CPU kernel also has no bf16/fp16 path). Inputs of any
    floating dtype are cast to float32; the output is float32 (B, C_out, H, W). Outside autocast this is the
    plain layer.
    """

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float(), offset.float(), mask.float())

    @classmethod
    def from_module(cls, conv: ModulatedDeformConv2d) -> 'FP32ModulatedDeformConv2d':
        """The same layer (configuration and weights) as an fp32 one."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, deform_groups=conv.deform_groups,
                  bias=conv.bias is not None)
        new.load_state_dict(conv.state_dict())
        return new
