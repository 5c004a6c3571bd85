# FIBER-B fine-grained pre-training (reference PRE.yaml): Objects365 + GoldG (no COCO) + Flickr30k,
# 800k iterations at a global batch of 64 (1 image per GPU on 64 GPUs), initialised from the coarse stage.
# Data layout and converters: tools/dataset_converters/README.md.
_base_ = ['./_base_/models/fiber_b.py', './_base_/default_runtime.py']

# the coarse-stage checkpoint, converted with
#   python tools/model_converters/fiber_to_mmdet.py fiber_coarse_init.pt checkpoints/fiber_coarse_init_mmdet.pth --coarse
load_from = 'checkpoints/fiber_coarse_init_mmdet.pth'

model = dict(backbone=dict(frozen_stages=1))  # patch embedding + stage 0 frozen (FREEZE_CONV_BODY_AT=2)

# where each training file comes from (printed when one is missing)
dataset_help = {
    'objects365': "tools/dataset_converters/README.md: mmdet's coco2odvg.py makes objects365_train_od.json and "
                  'o365v1_label_map.json from Objects365 v1',
    'final_mixed_train_no_coco': "tools/dataset_converters/README.md: mmdet's goldg2odvg.py makes it from MDETR's "
                                 'final_mixed_train_no_coco.json (GoldG); images: GQA',
    'gqa': 'GQA images (MDETR\'s GoldG mix); annotations: tools/dataset_converters/README.md',
    'flickr30k': "tools/dataset_converters/README.md: mmdet's goldg2odvg.py makes it from MDETR's "
                 'final_flickr_separateGT_train.json; images: Flickr30k',
    'checkpoints': 'README.md, section "Converting an official checkpoint" (the coarse-stage model, --coarse)',
    'default': 'tools/dataset_converters/README.md',
}
tokenizer = {{_base_.lang_model_name}}
max_iters = 800_000
lr_milestones = [int(0.67 * max_iters), int(0.89 * max_iters)]

meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction', 'text',
             'tokens_positive')
# CONTROL_PROB as released is (0.05, 0.05, 0.5, 0.2); the original asserts the 4th is 0 on the first sample.
# We implement the intended behaviour: positives are always kept and the 4th value is ignored.
caption = dict(type='ODToGroundingCaption', tokenizer_name=tokenizer, num_sample_negative=85, max_tokens=256,
               control_prob=(0.05, 0.05, 0.5, 0.2))
load = [dict(type='CheckedLoadImageFromFile', imdecode_backend='pillow'), dict(type='LoadAnnotations', with_bbox=True)]
resize_flip = [
    dict(type='ShortSideResize', short_sides=(480, 560, 640, 720, 800), max_long_side=1333),
    dict(type='RandomFlip_GLIP', prob=0.5),  # captions are not rewritten on flip, as in the original
    dict(type='PackDetInputs', meta_keys=meta_keys)
]
od_pipeline = load + [dict(type='ClipBoxesToImage', offset=1), caption] + resize_flip
vg_pipeline = load + [dict(type='GTBoxSubOne_GLIP'), dict(type='ClipBoxesToImage', offset=1), caption] + resize_flip

train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='ConcatDataset',  # uniform over the concatenation, as the original (*_COPY = 1)
        datasets=[
            dict(type='FilteredODVGDataset', data_root='data/objects365v1/', ann_file='objects365_train_od.json',
                 label_map_file='o365v1_label_map.json', data_prefix=dict(img='train/'), pipeline=od_pipeline,
                 return_classes=True),
            dict(type='FilteredODVGDataset', data_root='data/gqa/',
                 ann_file='../mdetr_annotations/final_mixed_train_no_coco_vg.json', data_prefix=dict(img='images/'),
                 pipeline=vg_pipeline, return_classes=True),
            dict(type='FilteredODVGDataset', data_root='data/flickr30k_entities/',
                 ann_file='../mdetr_annotations/final_flickr_separateGT_train_vg.json',
                 data_prefix=dict(img='flickr30k_images/'), pipeline=vg_pipeline, return_classes=True),
        ]))

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)  # no evaluation
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None

optim_wrapper = dict(
    type='NonFiniteSkipAmpOptimWrapper',  # AmpOptimWrapper that skips (and counts) non-finite steps
    # the AMP autocast type: float16 as the original; bfloat16 recommended on Ampere and newer (float32's range:
    # no loss scaling, no back-offs); see configs/_base_/fiber_b_finetune.py
    dtype='float16',
    loss_scale='dynamic',  # with dtype='bfloat16' a constant 1 (NonFiniteSkipAmpOptimWrapper)
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
    clip_grad=dict(max_norm=1.0, norm_type=2),  # full-model clipping at 1.0
    constructor='FIBEROptimWrapperConstructor',
    # language model lr 1e-5; every parameter whose name contains "bias" gets 2x lr and no weight decay
    paramwise_cfg=dict(language_model_lr_mult=0.1, bias_lr_mult=2.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=2000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=lr_milestones, gamma=0.1),
]
custom_hooks = [
    dict(type='NonFiniteSkipEMAHook', momentum=0.001, update_buffers=True),  # constant-decay EMA 0.999 (ema_state_dict)
    dict(type='WeightDecayScheduleHook', milestones=lr_milestones, gamma=0.1, fraction=0.667),
]
default_hooks = dict(
    logger=dict(interval=50, log_metric_by_epoch=False),  # validation metrics at their iteration in the curves
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=2500, max_keep_ckpts=10))
log_processor = dict(by_epoch=False)
# 64 images per step as in the paper; `--auto-scale-lr` rescales the lr for other batch sizes
auto_scale_lr = dict(enable=False, base_batch_size=64)
