# The embedded default: a small FIBER trained from scratch on the built-in toy dataset
# (python tools/misc/make_toy_dataset.py data/toy_shapes), with the same pipeline, losses, optimizer
# constructor and evaluators as the real recipe, sized to train in about 10 minutes on two CPU threads.
_base_ = ['../_base_/models/fiber_tiny.py', '../_base_/default_runtime.py']

data_root = 'data/toy_shapes/'
tokenizer_dir = data_root + 'tokenizer'
classes = ('circle', 'square', 'triangle', 'diamond', 'cross')
# About 10 min of training on two threads: AP50 0.70, attribute grounding 0.50 (one thread, seed 0). Every toy
# recipe's figures: docs/toy.md, section "What each recipe reaches"; what each choice buys: section "Findings".
batch_size = 4
max_iters = 1200
max_tokens = 64  # toy captions have at most 17 tokens; FIBER-B uses 256

model = dict(
    backbone=dict(drop_path_rate=0.0),
    language_model=dict(
        max_tokens=max_tokens,
        tokenizer=tokenizer_dir, config=dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
    # plain 3x3 convolutions instead of FIBER's deformable ones: even with our CPU deformable convolution (2x
    # faster than mmcv's here) a toy step costs 0.65 s with them against 0.39 s without (batch 1, one thread)
    # toy objects are 10-60 px: anchors of 4x the stride (32 px at P3) instead of FIBER's 8x
    # one DyHead block of 128 channels instead of two of 64: AP50 0.66 -> 0.69 and 8 % less time
    # a step (two blocks of 128: 0.74, but 19 % more time, over the 10-minute budget). Its input (the FPN) has 64
    # channels, so mmdet's DyConv, like GLIP's, builds it without DyReLU and scale attention: the one block that
    # learns the colour (fiber_toy_attribute_first.py; a 128-channel FPN, a full DyHead block: grounding 0.84 -> 0.68)
    bbox_head=dict(num_tokens=max_tokens, use_dcn=False, anchor_generator=dict(octave_base_scale=4),
                   feat_channels=128, num_dyhead_blocks=1),
    # FIBER's FPN DropBlock (30 %) regularises 800k iterations of real data; on ~1000 toy iterations it only slows
    # localisation down (loss_bbox 0.51 -> 0.39 at 300 iterations without it)
    neck=dict(plugin=dict(drop_prob=0.0)),
    test_cfg=dict(max_per_img=100))

meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction', 'text',
             'custom_entities', 'tokens_positive', 'phrases', 'phrase_ids')
caption = dict(type='ODToGroundingCaption', tokenizer_name=tokenizer_dir, num_sample_negative=85,
               max_tokens=max_tokens, control_prob=(0.05, 0.05, 0.5, 0.2))
load = [dict(type='CheckedLoadImageFromFile', imdecode_backend='pillow'), dict(type='LoadAnnotations', with_bbox=True)]
train_pipeline = load + [
    dict(type='ClipBoxesToImage', offset=1), caption,
    dict(type='ShortSideResize', short_sides=(128, 144, 160), max_long_side=256),
    dict(type='RandomFlip_GLIP', prob=0.0),  # captions say "left of": no flip on this data
    dict(type='PackDetInputs', meta_keys=meta_keys)
]
test_pipeline = [  # mmcv's loader by name, as mmdet's DetInferencer needs (see _base_/fiber_b_zero_shot.py)
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='ShortSideResize', short_sides=(144, ), max_long_side=256),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=meta_keys)
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type='FilteredODVGDataset', data_root=data_root, ann_file='annotations/train_od.jsonl',
                 label_map_file='annotations/label_map.json', data_prefix=dict(img='images/train_od/'),
                 pipeline=train_pipeline),
            # the same OD transform over the 20 seen colour-shape pairs as classes ("red circle. blue circle. ..."):
            # every box has same-shape negatives in other colours (grounding 0.42 -> 0.51)
            dict(type='FilteredODVGDataset', data_root=data_root, ann_file='annotations/train_od_attr.jsonl',
                 label_map_file='annotations/label_map_attr.json', data_prefix=dict(img='images/train_od_attr/'),
                 pipeline=train_pipeline),
            dict(type='FilteredODVGDataset', data_root=data_root, ann_file='annotations/train_vg.jsonl',
                 data_prefix=dict(img='images/train_vg/'), pipeline=train_pipeline),
        ]))

val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='SharedPipelineConcatDataset',  # one test pipeline for both; what DetInferencer reads
        pipeline=test_pipeline,
        datasets=[
            dict(type='CocoDataset', data_root=data_root, ann_file='annotations/val_coco.json',
                 data_prefix=dict(img='images/val/'), metainfo=dict(classes=classes), test_mode=True,
                 return_classes=True),
            # held-out colour-shape pairs beside seen ones of the same shape: colour and shape are both needed
            dict(type='Flickr30kDataset', data_root=data_root, ann_file='annotations/grounding_val.json',
                 data_prefix=dict(img='images/grounding/'), test_mode=True),
            # held-out pairs only, one per colour: the shape alone picks the box (a control for the split above)
            dict(type='Flickr30kDataset', data_root=data_root, ann_file='annotations/grounding_unique_colour_val.json',
                 data_prefix=dict(img='images/grounding_unique_colour/'), test_mode=True),
        ]))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='MultiDatasetsAverageEvaluator',
    metrics=[dict(type='CocoPlusOneMetric', ann_file=data_root + 'annotations/val_coco.json'),
             dict(type='Flickr30kRecallMetric', topk=(1, 5, 10, -1)),
             dict(type='Flickr30kRecallMetric', topk=(1, 5, 10, -1))],
    dataset_prefixes=['shapes', 'novel_grounding', 'novel_grounding_unique_colour'],
    average_keys=())
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ContainBadSamplesValLoop', on_bad_sample='raise')
test_cfg = dict(type='ContainBadSamplesTestLoop', on_bad_sample='raise')

optim_wrapper = dict(
    type='NonFiniteSkipOptimWrapper',  # OptimWrapper that skips (and counts) steps with a NaN/inf loss
    # torch's fused AdamW: one kernel for all 380 tensors, 31 ms a step against 180 ms for the per-tensor loop
    # (same update to 4e-8)
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01, fused=True),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    constructor='FIBEROptimWrapperConstructor',
    paramwise_cfg=dict(language_model_lr_mult=1.0, bias_lr_mult=2.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(0.67 * max_iters), int(0.89 * max_iters)], gamma=0.1),
]
custom_hooks = [
    dict(type='WeightDecayScheduleHook', milestones=[int(0.67 * max_iters), int(0.89 * max_iters)]),
]
default_hooks = dict(
    logger=dict(interval=20, log_metric_by_epoch=False),  # validation metrics at their iteration in the curves
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    visualization=dict(type='PerSampleVisualizationHook', draw=False))
log_processor = dict(by_epoch=False, window_size=20)
randomness = dict(seed=0)
