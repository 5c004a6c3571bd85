"""ODVG (JSON-lines) datasets with FIBER's construction-time filtering of images without boxes (fiber_spec §7.1)."""
from typing import List, Optional

from mmengine.logging import MMLogger

from mmdet.datasets import ODVGDataset
from mmdet.registry import DATASETS


@DATASETS.register_module()
class FilteredODVGDataset(ODVGDataset):
    """mmdet's :class:`~mmdet.datasets.ODVGDataset` that drops images left without boxes, and says how many.

    ``ODVGDataset`` reads both modes (OD with ``label_map_file``; VG with ``grounding.regions`` and their
    ``tokens_positive``) and already discards zero-area, < 1 px and fully-outside boxes, but keeps images that end
    up with no box at all (mmengine's default ``filter_data``). FIBER removes such images at construction (the
    reference instead skips any batch with a box-less image, gotcha 33); this class does it when
    ``filter_cfg['filter_empty_gt']`` is true (the default here) and not in ``test_mode``, and logs the count.

    Args:
        filter_cfg (dict, optional): ``dict(filter_empty_gt=True)`` by default.
        return_classes (bool): must be True for ``ODVGDataset``; defaults to True here.
        data_prefix (dict): ``dict(img=...)``, the image folder; defaults to ``dict(img='')`` (``ODVGDataset`` needs
            the ``img`` key).
        **kwargs: everything ``ODVGDataset`` takes (``data_root``, ``ann_file``, ``label_map_file``,
            ``need_text``, ``data_prefix``, ``pipeline``, ...).
    """

    def __init__(self,
                 *args,
                 filter_cfg: Optional[dict] = None,
                 return_classes: bool = True,
                 data_prefix: Optional[dict] = None,
                 **kwargs) -> None:
        if filter_cfg is None:
            filter_cfg = dict(filter_empty_gt=True)
        self.num_filtered_images = 0
        super().__init__(*args, filter_cfg=filter_cfg, return_classes=return_classes,
                         data_prefix=dict(img='') if data_prefix is None else data_prefix, **kwargs)

    def filter_data(self) -> List[dict]:
        if self.test_mode or not (self.filter_cfg or {}).get('filter_empty_gt', False):
            return self.data_list
        kept = [info for info in self.data_list if len(info['instances']) > 0]
        self.num_filtered_images = len(self.data_list) - len(kept)
        MMLogger.get_current_instance().info(
            f'{self.__class__.__name__} ({self.dataset_mode}, {self.ann_file}): kept {len(kept)} of '
            f'{len(self.data_list)} images, removed {self.num_filtered_images} without boxes')
        return kept
