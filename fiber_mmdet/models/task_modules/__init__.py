from .fiber_bbox_coder import DeltaXYWHBBoxCoderForFIBER

__all__ = ['DeltaXYWHBBoxCoderForFIBER']
