"""A 4-image COCO data set and a tiny ATSS config (ResNet-18 at 1/8 width, 96x128 images) for the tool tests."""
import importlib.util
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'

CONFIG_TEMPLATE = '''
default_scope = 'mmdet'
data_root = {data_root!r}
metainfo = dict(classes=('square', 'disc'))

model = dict(
    type='ATSS',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=18, base_channels=8, num_stages=4, out_indices=(1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch'),
    neck=dict(type='FPN', in_channels=[16, 32, 64], out_channels=16, start_level=0,
              add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(
        type='ATSSHead', num_classes=2, in_channels=16, stacked_convs=1, feat_channels=16,
        norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=4, scales_per_octave=1,
                              strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0], target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=200, min_bbox_size=0, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=20))

# no random augmentation: a resumed run must see exactly the same batches (MMEngine does not restore RNG state)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo, ann_file='annotations.json',
                 data_prefix=dict(img='images/'), filter_cfg=dict(filter_empty_gt=True, min_size=1),
                 pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo, ann_file='annotations.json',
                 data_prefix=dict(img='images/'), test_mode=True, pipeline=test_pipeline))
test_evaluator = dict(type='CocoMetric', ann_file=data_root + '/annotations.json', metric='bbox')
test_cfg = dict(type='TestLoop')

train_cfg = dict(type='IterBasedTrainLoop', max_iters=4)
# FIBER's recipe: its param groups, weight-decay schedule and EMA
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01),
    constructor='FIBEROptimWrapperConstructor',
    paramwise_cfg=dict(language_model_key='neck', language_model_lr_mult=0.5),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[3], gamma=0.1)]
custom_hooks = [
    dict(type='WeightDecayScheduleHook', milestones=[3], gamma=0.1, fraction=0.667),
    dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.001, update_buffers=True, priority=49),
]
auto_scale_lr = dict(enable=False, base_batch_size=2)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='RankZeroLoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
'''


def write_tiny_coco(root: Path, num_images: int = 4) -> None:
    """``root/images/*.jpg`` with coloured squares and discs, and ``root/annotations.json`` (xywh, pixels)."""
    import cv2
    rng = np.random.default_rng(0)
    (root / 'images').mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        height, width = 96, 128
        image = np.full((height, width, 3), 40, np.uint8) + rng.integers(0, 20, (height, width, 3), dtype=np.uint8)
        for category_id in (1, 2):
            size = int(rng.integers(20, 36))
            x, y = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
            colour = (0, 0, 230) if category_id == 1 else (230, 200, 0)
            if category_id == 1:
                cv2.rectangle(image, (x, y), (x + size - 1, y + size - 1), colour, -1)
            else:
                cv2.circle(image, (x + size // 2, y + size // 2), size // 2, colour, -1)
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_id, category_id=category_id,
                     bbox=[x, y, size, size], area=size * size, iscrowd=0))
        file_name = f'{image_id:04d}.jpg'
        cv2.imwrite(str(root / 'images' / file_name), image)
        images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
    categories = [dict(id=1, name='square'), dict(id=2, name='disc')]
    with open(root / 'annotations.json', 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)


@pytest.fixture(scope='session')
def tiny_config(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp('tiny_coco')
    write_tiny_coco(root)
    config = root / 'tiny_atss.py'
    config.write_text(CONFIG_TEMPLATE.format(data_root=str(root)))
    return str(config)


def load_tool(relative_path: str):
    """A script under ``tools/`` (not a package) imported as a module, e.g. ``'analysis_tools/shape_accuracy.py'``."""
    path = TOOLS / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_tool(args: List[str], cwd: str, timeout: int = 300, extra_env: Dict[str, str] = None) -> str:
    """Run a tool the way a user does (``python tools/x.py`` or ``bash tools/dist_x.sh``); returns its output."""
    env = dict(os.environ)
    env['PYTHONPATH'] = str(REPO_ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PYTHON'] = sys.executable
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # the tools must not need it
    env.pop('TORCH_FORCE_WEIGHTS_ONLY_LOAD', None)
    env.update(extra_env or {})
    command = ['bash', *args] if args[0].endswith('.sh') else [sys.executable, *args]
    result = subprocess.run(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f'{" ".join(command)} exited {result.returncode}:\n{result.stdout[-6000:]}')
    return result.stdout


def read_scalars(work_dir: str) -> List[dict]:
    """The ``vis_data/scalars.json`` records of the (single) run in ``work_dir``."""
    runs = sorted(d for d in os.listdir(work_dir) if osp.isdir(osp.join(work_dir, d)) and not d.startswith('.'))
    assert len(runs) == 1, runs
    with open(osp.join(work_dir, runs[0], 'vis_data', 'scalars.json')) as f:
        return [json.loads(line) for line in f]


def read_test_metrics(work_dir: str) -> dict:
    """The metrics ``tools/test.py`` wrote to ``work_dir/<timestamp>/<timestamp>.json``."""
    runs = sorted(d for d in os.listdir(work_dir) if osp.isdir(osp.join(work_dir, d)) and not d.startswith('.'))
    assert len(runs) == 1, runs
    with open(osp.join(work_dir, runs[0], runs[0] + '.json')) as f:
        return json.load(f)
