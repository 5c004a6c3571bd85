"""A COCO-format detection dataset for your own data: class names from the json, and the data checked up front."""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.fileio import get_local_path
from mmengine.logging import MMLogger

from mmdet.registry import DATASETS
from .box_drops import xywh_reaches_outside
from .coco import FilteredCocoDataset

# how many offending entries an error message lists before it only counts
_SHOWN = 5


def _listing(items: Sequence[str]) -> str:
    shown = '\n'.join(f'  {item}' for item in items[:_SHOWN])
    return shown + (f'\n  ... and {len(items) - _SHOWN} more' if len(items) > _SHOWN else '')


@DATASETS.register_module()
class CheckedCocoDataset(FilteredCocoDataset):
    """mmdet's :class:`~mmdet.datasets.CocoDataset` for any COCO-format json, checked when it is built (and, as
    :class:`FilteredCocoDataset`, counting every box it leaves out and the images left without boxes).

    * **Class names** come from the json's ``categories`` (in the file's order, which is the order mmdet numbers
      the labels in) unless ``metainfo=dict(classes=...)`` names them. Given names must be categories of the file
      and be listed in the file's order: mmdet numbers labels by file order whatever order ``classes`` has, so
      another order would silently give every box the wrong name.
    * **Categories** without a name (missing, empty or blank) and names used twice are errors (mmdet looks
      categories up by name).
    * **Images**: every image file the json lists must exist under ``data_prefix['img']``.
    * **Boxes** that reach outside their image by more than ``box_tolerance`` pixels are an error
      (``box_check='error'``, the default) or counted and logged (``'warn'``; the pipeline's
      ``ClipBoxesToImage`` then clips them, as the original does with Roboflow exports).

    Every error names the annotation file and lists the offending entries (image file names, annotation and
    category ids), so a broken export is found before the model is built.

    Args:
        box_check (str): ``'error'`` or ``'warn'``. Defaults to ``'error'``.
        box_tolerance (float): pixels a box may pass the image border (rounding in exports). Defaults to 1.0.
        check_images (bool): check that the image files exist. Defaults to True.
        **kwargs: everything :class:`~mmdet.datasets.CocoDataset` takes (``data_root``, ``ann_file``,
            ``data_prefix``, ``metainfo``, ``return_classes``, ``caption_prompt``, ``pipeline``, ...).
    """

    def __init__(self,
                 *args,
                 box_check: str = 'error',
                 box_tolerance: float = 1.0,
                 check_images: bool = True,
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        if box_check not in ('error', 'warn'):
            raise ValueError(f"box_check must be 'error' or 'warn', got {box_check!r}")
        self.box_check = box_check
        self.box_tolerance = float(box_tolerance)
        self.check_images = check_images
        self.classes_from_json = not (metainfo and metainfo.get('classes'))
        self.num_outside_boxes = 0
        super().__init__(*args, metainfo=metainfo, **kwargs)

    def _file_categories(self) -> List[dict]:
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            with open(local_path, encoding='utf-8') as f:
                return json.load(f).get('categories', [])

    def _check_categories(self, categories: List[dict]) -> List[str]:
        """Names of the file's categories in file order; raises on nameless or duplicate names."""
        if not categories:
            raise ValueError(f'{self.ann_file}: the json has no "categories"')
        nameless = [f'category id {c.get("id")}' for c in categories
                    if not isinstance(c.get('name'), str) or not c['name'].strip()]
        if nameless:
            raise ValueError(f'{self.ann_file}: {len(nameless)} categor(y/ies) without a name (FIBER prompts '
                             f'with the names; give each category a "name"):\n{_listing(nameless)}')
        names = [c['name'] for c in categories]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f'{self.ann_file}: category names used more than once (mmdet finds categories by '
                             f'name): {twice}')
        return names

    def load_data_list(self) -> List[dict]:
        file_names = self._check_categories(self._file_categories())
        if self.classes_from_json:
            self._metainfo['classes'] = tuple(file_names)
        else:
            classes = list(self._metainfo['classes'])
            unknown = [c for c in classes if c not in file_names]
            if unknown:
                raise ValueError(f'{self.ann_file}: metainfo classes {unknown} are not categories of the file '
                                 f'(its categories: {file_names})')
            in_file_order = [n for n in file_names if n in classes]
            if in_file_order != classes:
                raise ValueError(f'{self.ann_file}: metainfo classes must follow the file\'s category order '
                                 f'(mmdet numbers labels in that order): use {in_file_order}')
        self._missing_images: List[str] = []
        self._outside_boxes: List[str] = []
        data_list = super().load_data_list()
        if self._missing_images:
            raise FileNotFoundError(f'{self.ann_file}: {len(self._missing_images)} of {len(data_list)} images '
                                    f'do not exist under {self.data_prefix["img"]!r}:\n'
                                    f'{_listing(self._missing_images)}')
        self.num_outside_boxes = len(self._outside_boxes)
        if self._outside_boxes:
            message = (f'{self.ann_file}: {len(self._outside_boxes)} box(es) reach outside their image by more '
                       f'than {self.box_tolerance:g} px (xywh, image size):\n{_listing(self._outside_boxes)}')
            if self.box_check == 'error':
                raise ValueError(message + "\nFix the export, or set box_check='warn' to clip them in the "
                                 'pipeline (ClipBoxesToImage).')
            MMLogger.get_current_instance().warning(message + '\n(box_check=warn: they are clipped by the '
                                                    'pipeline)')
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Dict:
        img_info = raw_data_info['raw_img_info']
        data_info = super().parse_data_info(raw_data_info)
        if self.check_images and not osp.isfile(data_info['img_path']):
            self._missing_images.append(data_info['img_path'])
        width, height, tol = img_info['width'], img_info['height'], self.box_tolerance
        for ann in raw_data_info['raw_ann_info']:
            x, y, w, h = ann['bbox']
            if xywh_reaches_outside(ann['bbox'], width, height, tol):
                self._outside_boxes.append(f'annotation {ann.get("id")} of {img_info["file_name"]}: '
                                           f'[{x:g}, {y:g}, {w:g}, {h:g}] in {width}x{height}')
        return data_info
