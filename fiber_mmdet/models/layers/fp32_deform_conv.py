"""The head's modulated deformable convolutions computed in float32 under AMP, as the original forces them
(its DCN is decorated ``@custom_fwd(cast_inputs=torch.float32)``), and on CPU tensors with the
vectorised :func:`modulated_deform_conv2d_cpu` instead of mmcv's scalar CPU kernel."""
import torch
import torch.nn as nn
from mmcv.ops import ModulatedDeformConv2d
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmdet.registry import MODELS
from .deform_conv_cpu import modulated_deform_conv2d_cpu


@MODELS.register_module()
class FP32ModulatedDeformConv2d(ModulatedDeformConv2d):
    """mmcv's ``ModulatedDeformConv2d`` with autocast off inside, its inputs cast to float32, and a fast CPU path.

    Under autocast the offset/mask convolution produces half or bfloat16 values and mmcv casts the input to the
    offset's dtype, so without this the deformable convolution runs in low precision (or, on CPUs, fails). The
    output (B, C_out, H, W) is float32 whatever the autocast state.

    CPU tensors go through :func:`modulated_deform_conv2d_cpu` (equal to mmcv's CPU kernel up to rounding, forward
    and backward, including the flat-prefix read of a spatially larger offset); CUDA tensors through mmcv's
    kernel. Parameters, initialisation and state-dict keys are mmcv's.

    Attributes:
        use_mmcv_cpu_kernel (bool): Send CPU tensors to mmcv's kernel instead (False); for comparisons in tests
            and benchmarks, settable on the class or on one instance.
        recompute_columns (bool): In training on the CPU, keep only the inputs for backward and sample the
            im2col columns again there (True), as mmcv's kernel does, instead of keeping the columns
            (C_in * K times the input: 0.9 GiB of a FIBER-B 512² step's DyHead).
    """

    use_mmcv_cpu_kernel: bool = False
    recompute_columns: bool = True

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        """x (B, C_in, H, W), offset (B, dg * 2K, H_off, W_off), mask (B, dg * K, H_off, W_off) → (B, C_out,
        H_out, W_out) float32, K = kh * kw; see :func:`modulated_deform_conv2d_cpu` for the conventions."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, offset, mask = x.float(), offset.float(), mask.float()
            if x.device.type != 'cpu' or self.use_mmcv_cpu_kernel:
                return super().forward(x, offset, mask)
            bias = None if self.bias is None else self.bias.float()
            args = (x, offset, mask, self.weight.float(), bias, self.stride, self.padding, self.dilation,
                    self.groups, self.deform_groups)
            if self.recompute_columns and torch.is_grad_enabled() and any(
                    t is not None and t.requires_grad for t in args[:5]):
                return checkpoint(modulated_deform_conv2d_cpu, *args, use_reentrant=False)
            return modulated_deform_conv2d_cpu(*args)


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
