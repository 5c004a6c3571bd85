from .fp32_deform_conv import FP32ModulatedDeformConv2d
from .image_text_cross_attention import ImageTextCrossAttention
from .window_attention import CachedShiftWindowMSA, SDPAWindowMSA

__all__ = ['FP32ModulatedDeformConv2d', 'ImageTextCrossAttention', 'CachedShiftWindowMSA', 'SDPAWindowMSA']
from .spatial_dropblock import SpatialDropBlock  # noqa: E402

__all__ += ['SpatialDropBlock']
