from .coco import FilteredCocoDataset
from .coco_format import CheckedCocoDataset
from .few_shot import FewShotCocoDataset, few_shot_image_ids
from .odvg import FilteredODVGDataset
from .samplers import CurriculumSampler
from .shared_pipeline_concat import SharedPipelineConcatDataset
from .synthetic_shapes import generate_toy_dataset
from .transforms import *  # noqa: F401,F403

__all__ = [
    'CheckedCocoDataset', 'CurriculumSampler', 'FewShotCocoDataset', 'FilteredCocoDataset', 'FilteredODVGDataset',
    'SharedPipelineConcatDataset', 'few_shot_image_ids', 'generate_toy_dataset'
]
