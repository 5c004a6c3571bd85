"""The head's modulated deformable convolutions computed in float32 under AMP, as the original forces them
(its DCN is decorated ``@custom_fwd(cast_inputs=torch.float32)``, spec §9)."""
import torch
import torch.nn as nn
from mmcv.ops import ModulatedDeformConv2d
from torch import Tensor


class FP32ModulatedDeformConv2d(ModulatedDeformConv2d):
    """mmcv's ``ModulatedDeformConv2d`` with autocast off inside and its inputs cast to float32.

    Under autocast the offset/mask convolution produces half or bfloat16 values and mmcv casts the input to the
    offset's dtype, so without this the deformable convolution runs in low precision (or, on CPUs, fails). The
    output (B, C_out, H, W) is float32 whatever the autocast state.
    """

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float(), offset.float(), mask.float())


def use_fp32_deform_convs(module: nn.Module) -> int:
    """Make every ``ModulatedDeformConv2d`` under ``module`` a :class:`FP32ModulatedDeformConv2d`, in place.

    The subclass adds no state, so switching the class of the built instances keeps their parameters, their
    initialisation and the checkpoint keys. Returns how many were switched.
    """
    switched = 0
    for m in module.modules():
        if type(m) is ModulatedDeformConv2d:
            m.__class__ = FP32ModulatedDeformConv2d
            switched += 1
    return switched
