from .coco_format import CheckedCocoDataset
from .few_shot import FewShotCocoDataset, few_shot_image_ids
from .odvg import FilteredODVGDataset
from .synthetic_shapes import generate_toy_dataset
from .transforms import *  # noqa: F401,F403

__all__ = ['CheckedCocoDataset', 'FewShotCocoDataset', 'few_shot_image_ids', 'FilteredODVGDataset',
           'generate_toy_dataset']
