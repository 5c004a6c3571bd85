from .class_caption import ClassNamesToCaption
from .geometric import ClipBoxesToImage, ShortSideResize, fiber_resize_shape
from .od_to_grounding import ODToGroundingCaption, clean_name
from .text_tokenizer import LazyTokenizer

__all__ = ['ClassNamesToCaption', 'ClipBoxesToImage', 'ShortSideResize', 'fiber_resize_shape', 'ODToGroundingCaption', 'clean_name',
           'LazyTokenizer']
