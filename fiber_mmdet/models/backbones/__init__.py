from .fusion_swin import FusionSwinBlock, FusionSwinTransformer, SwinState

__all__ = ['FusionSwinBlock', 'FusionSwinTransformer', 'SwinState']
