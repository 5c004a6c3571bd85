"""The k-shot sampler (against a hand-computed subset), GENERAL_COPY repetition, and the checks of
CheckedCocoDataset on COCO-format files the tests write."""
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmdet.registry import DATASETS
from fiber_mmdet.datasets import CheckedCocoDataset, FewShotCocoDataset, few_shot_image_ids

# image id -> categories of its boxes (one box each unless repeated)
IMAGES = {5: ['a'], 1: ['a', 'b', 'b'], 3: ['b'], 2: ['a'], 4: ['c'], 6: ['a', 'c'], 7: ['b']}


def test_few_shot_matches_hand_computed_subsets():
    # k=1: 1 takes a and b, 4 takes c; nothing else has a category with quota left
    assert few_shot_image_ids(IMAGES.items(), 1) == [1, 4]
    # k=2: 1 (a1 b1; its two b boxes count once), 2 (a0), 3 (b0), 4 (c1), 5 skipped (a spent), 6 taken for c
    # (c0) although a is spent (a -1), 7 skipped
    assert few_shot_image_ids(IMAGES.items(), 2) == [1, 2, 3, 4, 6]
    # large k keeps everything, in id order
    assert few_shot_image_ids(IMAGES.items(), 10) == sorted(IMAGES)
    with pytest.raises(ValueError, match='shots must be > 0'):
        few_shot_image_ids(IMAGES.items(), 0)


def write_coco(root: str, images: dict, categories=None, size=(40, 30), boxes=None, missing=()) -> str:
    """COCO json ``root/ann.json`` + PNGs in ``root/img/``; ``images``: id -> category names."""
    import os
    os.makedirs(osp.join(root, 'img'), exist_ok=True)
    categories = categories or [dict(id=1, name='a'), dict(id=2, name='b'), dict(id=3, name='c')]
    by_name = {c.get('name'): c['id'] for c in categories}
    out_images, annotations = [], []
    for img_id, names in images.items():
        file_name = f'{img_id:03d}.png'
        if img_id not in missing:
            Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(osp.join(root, 'img', file_name))
        out_images.append(dict(id=img_id, file_name=file_name, width=size[0], height=size[1]))
        for k, name in enumerate(names):
            bbox = (boxes or {}).get((img_id, k), [2 + 3 * k, 2, 10, 8])
            annotations.append(dict(id=len(annotations) + 1, image_id=img_id, category_id=by_name[name], bbox=bbox,
                                    area=bbox[2] * bbox[3], iscrowd=0))
    path = osp.join(root, 'ann.json')
    with open(path, 'w') as f:
        json.dump(dict(images=out_images, annotations=annotations, categories=categories), f)
    return path


def build(root, cls=CheckedCocoDataset, **kwargs):
    return cls(data_root=root, ann_file='ann.json', data_prefix=dict(img='img/'), pipeline=[], **kwargs)


def test_few_shot_dataset_and_general_copy(tmp_path):
    root = str(tmp_path)
    write_coco(root, {**IMAGES, 8: []})  # image 8 has no box: removed before the subset is taken
    full = build(root, FewShotCocoDataset, shots=0, filter_cfg=dict(filter_empty_gt=True))
    assert sorted(full[i]['img_id'] for i in range(len(full))) == sorted(IMAGES)
    two = build(root, FewShotCocoDataset, shots=2, filter_cfg=dict(filter_empty_gt=True))
    assert [two.get_data_info(i)['img_id'] for i in range(len(two))] == [1, 2, 3, 4, 6]
    # GENERAL_COPY: the subset repeated per epoch (8 copies for 1 shot)
    repeated = DATASETS.build(dict(type='RepeatDataset', times=8, dataset=dict(
        type='FewShotCocoDataset', shots=1, data_root=root, ann_file='ann.json', data_prefix=dict(img='img/'),
        filter_cfg=dict(filter_empty_gt=True), pipeline=[])))
    assert len(repeated) == 8 * 2
    assert [repeated.get_data_info(i)['img_id'] for i in range(4)] == [1, 4, 1, 4]


def test_classes_come_from_the_json_in_file_order(tmp_path):
    root = str(tmp_path)
    # categories listed out of id order: mmdet numbers labels in file order, and so must the class names
    write_coco(root, {1: ['disc', 'square']}, categories=[dict(id=7, name='disc'), dict(id=2, name='square')])
    ds = build(root)
    assert ds.metainfo['classes'] == ('disc', 'square')
    labels = [inst['bbox_label'] for inst in ds.get_data_info(0)['instances']]
    assert labels == [0, 1]
    assert build(root, metainfo=dict(classes=('square', ))).metainfo['classes'] == ('square', )
    with pytest.raises(ValueError, match="must follow the file's category order.*'disc', 'square'"):
        build(root, metainfo=dict(classes=('square', 'disc')))
    with pytest.raises(ValueError, match=r"classes \['cat'\] are not categories"):
        build(root, metainfo=dict(classes=('cat', )))


@pytest.mark.parametrize('categories,match', [
    ([dict(id=1, name='a'), dict(id=2, name=' ')], 'without a name(.|\n)*category id 2'),
    ([dict(id=1, name='a'), dict(id=2)], 'without a name(.|\n)*category id 2'),
    ([dict(id=1, name='a'), dict(id=2, name='a')], r"more than once.*\['a'\]"),
])
def test_bad_categories_are_errors(tmp_path, categories, match):
    write_coco(str(tmp_path), {1: ['a']}, categories=categories)
    with pytest.raises(ValueError, match=match):
        build(str(tmp_path))


def test_missing_images_are_listed(tmp_path):
    write_coco(str(tmp_path), {1: ['a'], 2: ['b'], 3: ['c']}, missing=(2, 3))
    with pytest.raises(FileNotFoundError, match=r'2 of 3 images do not exist(.|\n)*002.png(.|\n)*003.png'):
        build(str(tmp_path))


def test_boxes_outside_the_image(tmp_path, log_messages):
    root = str(tmp_path)
    # 40x30 image: x + w = 45 > 40 + 1 (an error); y = -0.5 is within the 1 px tolerance
    write_coco(root, {1: ['a', 'b'], 2: ['c']}, boxes={(1, 1): [30, 2, 15, 5], (2, 0): [3, -0.5, 5, 5]})
    with pytest.raises(ValueError, match=r'1 box\(es\) reach outside(.|\n)*annotation 2 of 001.png: \[30, 2, 15, 5\]'):
        build(root)
    ds = build(root, box_check='warn')
    assert ds.num_outside_boxes == 1 and len(ds) == 2
    assert any('1 box(es) reach outside' in m for m in log_messages)
