"""ODVG reading (mmdet's ODVGDataset, OD and VG modes) with FIBER's empty-image filter, and the OD + VG mix."""
import json
import os.path as osp
import random

import numpy as np
import pytest
from mmdet.registry import DATASETS

from fiber_mmdet.datasets import FilteredODVGDataset
from fiber_mmdet.datasets.transforms import clean_name


def _write_jsonl(path, lines):
    with open(path, 'w') as f:
        for line in lines:
            f.write(json.dumps(line) + '\n')


@pytest.fixture
def odvg_files(tmp_path):
    (tmp_path / 'label_map.json').write_text(json.dumps({'0': 'person', '1': 'traffic_light', '2': 'dog'}))
    _write_jsonl(tmp_path / 'od.jsonl', [
        dict(filename='a.jpg', height=100, width=200, detection=dict(instances=[
            dict(bbox=[10, 10, 50, 60], label=0, category='person'),
            dict(bbox=[60, 10, 90, 40], label=2, category='dog')])),
        dict(filename='b.jpg', height=100, width=200, detection=dict(instances=[])),  # no boxes at all
        dict(filename='c.jpg', height=100, width=200, detection=dict(instances=[
            dict(bbox=[10, 10, 10.5, 60], label=1, category='traffic_light')])),  # < 1 px wide: dropped by mmdet
        dict(filename='d.jpg', height=100, width=200, detection=dict(instances=[
            dict(bbox=[0, 0, 199, 99], label=1, category='traffic_light')])),
    ])
    caption = 'A man walks a dog. The dog is brown.'
    _write_jsonl(tmp_path / 'vg.jsonl', [
        dict(filename='e.jpg', height=100, width=200, grounding=dict(caption=caption, regions=[
            dict(bbox=[1, 1, 30, 90], phrase='A man', tokens_positive=[[0, 5]]),
            dict(bbox=[[40, 50, 80, 90], [100, 50, 140, 90]], phrase='a dog', tokens_positive=[[12, 17], [19, 26]]),
        ])),
        dict(filename='f.jpg', height=100, width=200, grounding=dict(caption='nothing here', regions=[
            dict(bbox=[300, 300, 310, 310], phrase='nothing', tokens_positive=[[0, 7]])])),  # outside the image
    ])
    return tmp_path


def test_od_mode(odvg_files, log_messages):
    dataset = FilteredODVGDataset(data_root=str(odvg_files), ann_file='od.jsonl', label_map_file='label_map.json',
                                  data_prefix=dict(img='images/'), pipeline=[])
    assert len(dataset) == 2 and dataset.num_filtered_images == 2
    assert any('kept 2 of 4 images, removed 2 without boxes' in m for m in log_messages)
    first = dataset[0]
    assert first['img_path'] == osp.join(str(odvg_files), 'images', 'a.jpg')
    assert first['text'] == {'0': 'person', '1': 'traffic_light', '2': 'dog'}
    assert [i['bbox_label'] for i in first['instances']] == [0, 2]
    assert first['instances'][0]['bbox'] == [10, 10, 50, 60]
    assert first['dataset_mode'] == 'OD'
    # test_mode keeps every image, as mmdet does for evaluation
    full = FilteredODVGDataset(data_root=str(odvg_files), ann_file='od.jsonl', label_map_file='label_map.json',
                               test_mode=True, pipeline=[])
    assert len(full) == 4
    unfiltered = FilteredODVGDataset(data_root=str(odvg_files), ann_file='od.jsonl',
                                     label_map_file='label_map.json', filter_cfg=dict(filter_empty_gt=False),
                                     pipeline=[])
    assert len(unfiltered) == 4


def test_vg_mode(odvg_files):
    dataset = FilteredODVGDataset(data_root=str(odvg_files), ann_file='vg.jsonl', pipeline=[])
    assert len(dataset) == 1 and dataset.num_filtered_images == 1
    info = dataset[0]
    assert info['dataset_mode'] == 'VG' and info['text'] == 'A man walks a dog. The dog is brown.'
    assert [i['bbox_label'] for i in info['instances']] == [0, 1, 1]  # label = region index, one per box
    assert info['phrases'][1]['tokens_positive'] == [[12, 17], [19, 26]]


def test_registered():
    assert DATASETS.get('FilteredODVGDataset') is FilteredODVGDataset


def _pipeline(tokenizer_dir):
    return [
        dict(type='LoadImageFromFile', imdecode_backend='pillow'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='ODToGroundingCaption', tokenizer_name=tokenizer_dir),
        dict(type='ShortSideResize', short_sides=(48, 64), max_long_side=100),
        dict(type='RandomFlip_GLIP', prob=0.5),
        dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                              'flip', 'flip_direction', 'text', 'tokens_positive')),
    ]


def test_toy_mix_through_pipeline(toy_dataset):
    """OD (captions synthesised) + VG (captions given) in one mmdet ConcatDataset, as in pre-training."""
    root, meta = toy_dataset
    tokenizer_dir = osp.join(root, 'tokenizer')
    od = dict(type='FilteredODVGDataset', data_root=root, ann_file=meta['files']['train_od'],
              label_map_file=meta['files']['label_map'], data_prefix=dict(img=meta['data_prefix']['train_od']),
              pipeline=_pipeline(tokenizer_dir))
    vg = dict(type='FilteredODVGDataset', data_root=root, ann_file=meta['files']['train_vg'],
              data_prefix=dict(img=meta['data_prefix']['train_vg']), pipeline=_pipeline(tokenizer_dir))
    mix = DATASETS.build(dict(type='ConcatDataset', datasets=[od, vg]))
    num_od = meta['counts']['train_od'] - meta['counts']['train_od_empty']
    assert len(mix) == num_od + meta['counts']['train_vg']
    assert mix.metainfo['cumulative_sizes'] == [num_od, len(mix)]
    label_names = json.load(open(osp.join(root, meta['files']['label_map'])))
    random.seed(0)
    np.random.seed(0)
    for index in [0, 1, 2, num_od, num_od + 1, num_od + 2]:
        sample = mix[index]['data_samples']
        text, spans = sample.text, sample.tokens_positive
        labels = sample.gt_instances.labels.tolist()
        assert isinstance(text, str) and len(labels) > 0 and set(labels) == set(spans)
        assert min(sample.img_shape) in (48, 64)
        for label in labels:
            for beg, end in spans[label]:
                assert 0 <= beg < end <= len(text)
        if index < num_od:
            written = text.split('. ')
            for label in labels:
                assert written[label] in [clean_name(n) for n in label_names.values()]
        else:
            raw = mix.datasets[1].get_data_info(index - num_od)
            assert text == raw['text']
