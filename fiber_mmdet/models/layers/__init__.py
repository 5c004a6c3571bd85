from .deform_conv_cpu import modulated_deform_conv2d_cpu
from .fp32_deform_conv import FP32ModulatedDeformConv2d, use_fp32_deform_convs
from .image_text_cross_attention import ImageTextCrossAttention
from .window_attention import CachedShiftWindowMSA, SDPAWindowMSA

__all__ = [
    'FP32ModulatedDeformConv2d', 'ImageTextCrossAttention', 'CachedShiftWindowMSA',
    'SDPAWindowMSA',
    'modulated_deform_conv2d_cpu', 'use_fp32_deform_convs'
]
from .spatial_dropblock import SpatialDropBlock  # noqa: E402

__all__ += ['SpatialDropBlock']
from .softmax_attention import RecomputedSoftmaxAttention, softmax_attention  # noqa: E402

__all__ += ['RecomputedSoftmaxAttention', 'softmax_attention']
from .gelu_linear_ffn import GeluLinear, GeluLinearFFN  # noqa: E402

__all__ += ['GeluLinear', 'GeluLinearFFN']
