from .coco import FilteredCocoDataset
from .odvg import FilteredODVGDataset
from .shared_pipeline_concat import SharedPipelineConcatDataset
from .synthetic_shapes import generate_toy_dataset
from .transforms import *  # noqa: F401,F403

__all__ = ['FilteredCocoDataset', 'FilteredODVGDataset', 'SharedPipelineConcatDataset', 'generate_toy_dataset']
