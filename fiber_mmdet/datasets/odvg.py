"""ODVG (JSON-lines) datasets with FIBER's construction-time filtering of images without boxes,
and a count, per reason, of every box left out."""
import json
from collections import Counter
from typing import Dict, List, Optional, Sequence

from mmengine.fileio import get_local_path
from mmengine.logging import MMLogger

from mmdet.datasets import ODVGDataset
from mmdet.registry import DATASETS
from .box_drops import box_drop_reason, log_box_drops


def count_dropped_boxes(lines: Sequence[str], dataset_mode: str) -> Counter:
    """Boxes of ODVG annotation lines that ``ODVGDataset`` drops, counted per :func:`box_drop_reason`."""
    reasons: Counter = Counter()
    for line in lines:
        data = json.loads(line)
        if dataset_mode == 'OD':
            boxes = [obj['bbox'] for obj in data.get('detection', {}).get('instances', [])]
        else:
            boxes = []
            for region in data['grounding']['regions']:
                boxes += region['bbox'] if isinstance(region['bbox'][0], list) else [region['bbox']]
        reasons.update(r for r in (box_drop_reason(b, data['width'], data['height']) for b in boxes) if r)
    return reasons


@DATASETS.register_module()
class FilteredODVGDataset(ODVGDataset):
    """mmdet's :class:`~mmdet.datasets.ODVGDataset` that drops images left without boxes, and says how many.

    ``ODVGDataset`` reads both modes (OD with ``label_map_file``; VG with ``grounding.regions`` and their
    ``tokens_positive``) and already discards zero-area, < 1 px and fully-outside boxes, but keeps images that end
    up with no box at all (mmengine's default ``filter_data``). FIBER removes such images at construction (the
    reference instead skips any batch with a box-less image); this class does it when
    ``filter_cfg['filter_empty_gt']`` is true (the default here) and not in ``test_mode``, and logs the count.
    It also drops OD boxes whose label is not in the label map, and logs every box left out per reason
    (``box_drops``: outside the image, zero area, negative size, smaller than 1 px, unknown category); counting
    mmdet's drops reads the annotation lines a second time.

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
        self.box_drops: Dict[str, int] = {}
        super().__init__(*args, filter_cfg=filter_cfg, return_classes=return_classes,
                         data_prefix=dict(img='') if data_prefix is None else data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            with open(local_path, 'r') as f:
                drops = count_dropped_boxes(f.readlines(), self.dataset_mode)
        if self.dataset_mode == 'OD' and getattr(self, 'label_map', None):
            known = {int(k) for k in self.label_map}
            for info in data_list:
                kept = [inst for inst in info['instances'] if inst['bbox_label'] in known]
                drops['unknown category'] += len(info['instances']) - len(kept)
                info['instances'] = kept
        self.box_drops = log_box_drops(f'{self.__class__.__name__} ({self.dataset_mode}, {self.ann_file})', drops)
        return data_list

    def filter_data(self) -> List[dict]:
        if self.test_mode or not (self.filter_cfg or {}).get('filter_empty_gt', False):
            return self.data_list
        kept = [info for info in self.data_list if len(info['instances']) > 0]
        self.num_filtered_images = len(self.data_list) - len(kept)
        MMLogger.get_current_instance().info(
            f'{self.__class__.__name__} ({self.dataset_mode}, {self.ann_file}): kept {len(kept)} of '
            f'{len(self.data_list)} images, removed {self.num_filtered_images} without boxes')
        return kept
