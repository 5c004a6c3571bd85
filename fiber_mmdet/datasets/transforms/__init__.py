from .geometric import ClipBoxesToImage, ShortSideResize, fiber_resize_shape
from .loading import CheckedLoadImageFromFile, ImageLoadError, image_load_error
from .od_to_grounding import ODToGroundingCaption, clean_name
from .text_tokenizer import LazyTokenizer

__all__ = ['CheckedLoadImageFromFile', 'ClipBoxesToImage', 'ImageLoadError', 'ShortSideResize', 'fiber_resize_shape',
           'image_load_error', 'ODToGroundingCaption', 'clean_name', 'LazyTokenizer']
