"""Detection sample -> caption of all class names, FIBER's COCO / ODinW fine-tuning caption."""
import random
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform

from mmdet.registry import TRANSFORMS
from fiber_mmdet.utils.prompts import build_class_prompt


@TRANSFORMS.register_module()
class ClassNamesToCaption(BaseTransform):
    """Write every class name of the dataset into the caption, in a new random order per sample if ``shuffle``
    (the reference's ``convert_od_to_grounding_simple``).

    Names are cleaned (:func:`~fiber_mmdet.utils.clean_name`) and joined by ``separator`` with no trailing
    separator; a dataset's ``caption_prompt`` (``{name: {'prefix', 'name', 'suffix'}}``) writes prefix + name +
    suffix, as with ``USE_CAPTION_PROMPT``. Shuffling is refused with a caption prompt, as in the reference (the
    prompts are written for one order). Without ``shuffle`` the caption is the one the detector builds itself
    from the class list, so the transform is only needed for shuffled captions (COCO).

    Required Keys:

    - text (tuple[str]): the class names (``return_classes=True``)
    - gt_bboxes_labels (np.int64)
    - caption_prompt (dict, optional)

    Modified Keys:

    - text: the caption (str)

    Added Keys:

    - tokens_positive (dict[int, list[list[int]]]): the character span of every class, keyed by label

    Args:
        shuffle (bool): shuffle the class order of every sample. Defaults to True.
        separator (str): between names. Defaults to ``'. '``.
    """

    def __init__(self, shuffle: bool = True, separator: str = '. ') -> None:
        self.shuffle = shuffle
        self.separator = separator

    def transform(self, results: dict) -> dict:
        names = results.get('text')
        if not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f'{self.__class__.__name__} needs the class names in results["text"] (a dataset '
                             f'with return_classes=True); got {type(names).__name__} for '
                             f'{results.get("img_path", "a sample")}')
        caption_prompt: Optional[dict] = results.get('caption_prompt')
        if self.shuffle and caption_prompt:
            raise ValueError(f'{self.__class__.__name__}: a caption prompt fixes the class order; set '
                             'shuffle=False (the reference asserts the same)')
        order = list(range(len(names)))
        if self.shuffle:
            random.shuffle(order)
        caption, spans = build_class_prompt([names[i] for i in order], caption_prompt, separator=self.separator,
                                            clean=True)
        results['text'] = caption
        results['tokens_positive'] = {label: [list(span) for span in spans[place]]
                                      for place, label in enumerate(order)}
        labels = np.asarray(results['gt_bboxes_labels']).reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f'{results.get("img_path", "a sample")}: labels {sorted(set(labels.tolist()))} '
                             f'outside the {len(names)} classes')
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(shuffle={self.shuffle}, separator={self.separator!r})'
