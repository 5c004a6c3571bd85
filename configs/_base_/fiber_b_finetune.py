# FIBER-B fine-tuning recipe (COCO.yaml, the LVIS and RefCOCO yamls), the part the downstream configs
# share. It is a mixin: it holds only training keys, so that a fine-tune config can inherit it together with the
# zero-shot config of its benchmark (whose test set, evaluator and test-time settings it keeps):
#     _base_ = ['../coco/fiber_b_coco_zero_shot.py', '../_base_/fiber_b_finetune.py']
# The fine-tune config then sets load_from, the model's activation checkpointing, default_hooks.checkpoint
# (finetune_checkpoint_hook) and its train / val data.
#
# AdamW 1e-5 for image and text (LANG_LR 1e-5), weight decay 1e-4, FIBER's bias rule (2x lr, no decay), linear
# warmup over 2000 iterations from 1e-3, lr x0.1 at 67 % and 89 % of the iterations, AMP (the deformable
# convolutions and the losses stay fp32 inside the model), EMA 0.999, no gradient clipping, no frozen stages,
# validation every epoch, the best checkpoint kept. `--auto-scale-lr` rescales the lr for another global batch.
finetune_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction',
                      'text', 'custom_entities', 'caption_prompt', 'tokens_positive')
# the original's box convention for COCO-style json: x2 = x + w - 1, clipped to the image
finetune_load = [
    dict(type='CheckedLoadImageFromFile', imdecode_backend='pillow'),  # an unreadable image is named
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='GTBoxSubOne_GLIP'),
    dict(type='ClipBoxesToImage', offset=1),
]
finetune_resize_flip = [
    dict(type='ShortSideResize', short_sides=(480, 560, 640, 720, 800), max_long_side=1333),
    dict(type='RandomFlip_GLIP', prob=0.5),  # captions are not rewritten on flip, as in the original
    dict(type='PackDetInputs', meta_keys=finetune_meta_keys)
]
# the epoch's checkpoint and the best one on the validation metric ('auto': the evaluator's first key); a tie
# with the best also saves, as the original's model_best
finetune_checkpoint_hook = dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=1, save_best='auto',
                                rule='greater_equal')

max_epochs = 24
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ContainBadSamplesValLoop', on_bad_sample='raise')  # a bad sample stops it, named
train_dataloader = dict(
    batch_size=4,  # x 8 GPUs = 32, the original's global batch
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'))
val_dataloader = dict(
    batch_size=1,  # the text attends to padded image tokens: one image per GPU, as at test time
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False))

# AMP autocast type, one key for every fine-tuning recipe (`--cfg-options optim_wrapper.dtype=bfloat16`).
# float16 is the original's (apex) and runs on every CUDA GPU, but its narrow range needs the dynamic loss scale,
# whose back-offs skip steps (logged and counted apart by NonFiniteGuardHook). bfloat16 is recommended on Ampere
# and newer (A100, RTX 30xx, H100, ...): it has float32's exponent range, so activations and gradients do not
# overflow where float32 would not, no loss scaling is needed and no step is skipped for it (it keeps fewer
# mantissa bits than float16; autocast leaves the precision-sensitive ops, and the losses, in float32). Older GPUs
# (V100, T4) have no fast bfloat16: keep float16 there. Without CUDA the tools train in fp32.
optim_wrapper = dict(
    type='NonFiniteSkipAmpOptimWrapper',  # AMP; non-finite steps skipped and counted (NonFiniteGuardHook)
    dtype='float16',
    loss_scale='dynamic',  # with dtype='bfloat16' a constant 1 (NonFiniteSkipAmpOptimWrapper)
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4),
    constructor='FIBEROptimWrapperConstructor',
    paramwise_cfg=dict(language_model_lr_mult=1.0, bias_lr_mult=2.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=2000),
    dict(type='FractionMultiStepLR', fractions=(0.67, 0.89), gamma=0.1, begin=0, end=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
custom_hooks = [dict(type='NonFiniteSkipEMAHook', momentum=0.001, update_buffers=True)]  # EMA 0.999; skipped steps
auto_scale_lr = dict(enable=False, base_batch_size=32)
