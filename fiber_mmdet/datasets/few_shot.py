"""FIBER / GLIP's k-shot training subsets of a detection dataset (ODinW fine-tuning logic)."""
from typing import Hashable, Iterable, List, Tuple

from mmengine.logging import MMLogger

from mmdet.registry import DATASETS
from .coco_format import CheckedCocoDataset


def few_shot_image_ids(images: Iterable[Tuple[int, Iterable[Hashable]]], shots: int) -> List[int]:
    """The images of a k-shot subset, as the original picks them (``modulated_coco.py``, ``FEW_SHOT``).

    Images are visited in increasing id order. An image is taken if at least one of its categories still has
    quota left; taking it uses one unit of the quota of *every* category in it (image-level counting: an image
    with three boxes of one category counts once). Every category starts with ``shots`` units. There is no
    randomness: the seed of a run does not change its subset.

    Args:
        images: ``(image id, categories of its boxes)`` pairs, any order.
        shots: k (> 0).

    Returns:
        list[int]: the chosen image ids, in increasing order.
    """
    if shots <= 0:
        raise ValueError(f'shots must be > 0 (0 means the full set: do not subsample), got {shots}')
    quota = {}
    chosen = []
    for img_id, categories in sorted(images, key=lambda item: item[0]):
        categories = set(categories)
        if any(quota.get(c, shots) > 0 for c in categories):
            chosen.append(img_id)
            for c in categories:
                quota[c] = quota.get(c, shots) - 1
    return chosen


@DATASETS.register_module()
class FewShotCocoDataset(CheckedCocoDataset):
    """:class:`CheckedCocoDataset` restricted to FIBER's k-shot subset (:func:`few_shot_image_ids`).

    The subset is taken from the images left after mmdet's filtering (``filter_cfg``: images without boxes are
    removed first, as the original does), over all their boxes (ignored ones included, as the original counts
    every annotation of an image). The log says how many images were kept.

    Args:
        shots (int): k images per category; 0 keeps every image (the "full" setting). Defaults to 0.
        **kwargs: everything :class:`CheckedCocoDataset` takes.
    """

    def __init__(self, *args, shots: int = 0, **kwargs) -> None:
        if shots < 0:
            raise ValueError(f'shots must be >= 0, got {shots}')
        self.shots = int(shots)
        super().__init__(*args, **kwargs)

    def filter_data(self) -> List[dict]:
        data_list = super().filter_data()
        if self.shots == 0:
            return data_list
        ids = few_shot_image_ids(
            ((info['img_id'], [inst['bbox_label'] for inst in info['instances']]) for info in data_list),
            self.shots)
        keep = set(ids)
        kept = sorted((info for info in data_list if info['img_id'] in keep), key=lambda info: info['img_id'])
        MMLogger.get_current_instance().info(
            f'{self.__class__.__name__} ({self.ann_file}): {self.shots}-shot subset of {len(kept)} of '
            f'{len(data_list)} images')
        return kept

