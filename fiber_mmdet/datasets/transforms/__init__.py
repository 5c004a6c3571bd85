from .class_caption import ClassNamesToCaption
from .geometric import ClipBoxesToImage, ShortSideResize, fiber_resize_shape
from .loading import (CheckedLoadImageFromFile, ImageLoadError, image_load_error, pipeline_orientation,
                      with_user_image_loader)
from .od_to_grounding import ODToGroundingCaption, clean_name
from .text_tokenizer import LazyTokenizer

__all__ = [
    'CheckedLoadImageFromFile', 'ClassNamesToCaption', 'ClipBoxesToImage', 'ImageLoadError', 'LazyTokenizer',
    'ODToGroundingCaption', 'ShortSideResize', 'clean_name', 'fiber_resize_shape', 'image_load_error',
    'pipeline_orientation', 'with_user_image_loader'
]
