"""COCO-format detection data (COCO, LVIS-as-COCO, ODinW, custom fine-tuning sets) that counts what it leaves out."""
from collections import Counter
from typing import Dict, List, Union

from mmengine.logging import MMLogger

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from .box_drops import box_drop_reason, log_box_drops


@DATASETS.register_module()
class FilteredCocoDataset(CocoDataset):
    """mmdet's :class:`~mmdet.datasets.CocoDataset` (same arguments) that logs every box it leaves out, per
    reason, and the images left without boxes.

    ``CocoDataset`` silently skips boxes outside the image, of zero or negative size, under 1 px or of a category
    not in ``metainfo.classes``, and with ``filter_cfg.filter_empty_gt`` still keeps an image whose boxes were all
    skipped. Here each skipped box is counted (``box_drops``), and outside ``test_mode`` with ``filter_empty_gt``
    the images left without boxes are removed too; both counts are logged at construction.
    """

    def load_data_list(self) -> List[dict]:
        self._drops: Counter = Counter()
        data_list = super().load_data_list()
        self.box_drops: Dict[str, int] = log_box_drops(f'{self.__class__.__name__} ({self.ann_file})', self._drops)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        img = raw_data_info['raw_img_info']
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False):
                continue
            x, y, w, h = ann['bbox']
            reason = box_drop_reason([x, y, x + w, y + h], img['width'], img['height'])
            if reason is None and ann['area'] <= 0:
                reason = 'zero area'
            if reason is None and ann['category_id'] not in self.cat_ids:
                reason = 'unknown category'
            if reason is not None:
                self._drops[reason] += 1
        return super().parse_data_info(raw_data_info)

    def filter_data(self) -> List[dict]:
        kept = super().filter_data()
        if self.test_mode or not (self.filter_cfg or {}).get('filter_empty_gt', False):
            return kept
        with_boxes = [info for info in kept if info['instances']]
        removed = len(self.data_list) - len(with_boxes)
        MMLogger.get_current_instance().info(
            f'{self.__class__.__name__} ({self.ann_file}): kept {len(with_boxes)} of {len(self.data_list)} images, '
            f'removed {removed} ({len(kept) - len(with_boxes)} whose boxes were all left out)')
        return with_boxes
