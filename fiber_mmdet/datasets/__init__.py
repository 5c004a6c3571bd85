from .coco import FilteredCocoDataset
from .odvg import FilteredODVGDataset
from .synthetic_shapes import generate_toy_dataset
from .transforms import *  # noqa: F401,F403

__all__ = ['FilteredCocoDataset', 'FilteredODVGDataset', 'generate_toy_dataset']
