# FIBER-B evaluated zero-shot: the fine-grained checkpoint converted by
# tools/model_converters/fiber_to_mmdet.py, fp32, one image per GPU (the text attends to padded image tokens, so
# larger test batches change the outputs), the original's resize (short side 800, long side <= 1333, PIL
# bilinear) on PIL-decoded BGR images. Each benchmark config sets the test dataset and evaluator.
_base_ = ['./models/fiber_b.py', './default_runtime.py']

# Where the benchmark data comes from; a missing annotation file or image folder is reported with this hint.
dataset_help = 'docs/datasets.md, section "Evaluation data"'

test_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text', 'custom_entities',
                  'caption_prompt', 'tokens_positive', 'phrases', 'phrase_ids', 'dataset_mode')
test_pipeline = [
    # mmcv's name on purpose: mmdet's DetInferencer / inference_detector look the loader up by it; in evaluation
    # the ContainBadSamples loops name (or count) an unreadable image themselves
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='ShortSideResize', short_sides=(800, ), max_long_side=1333),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=test_meta_keys)
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(test_mode=True, pipeline=test_pipeline))
# strict: a bad image or prompt stops the run with the sample named, so a published number is never computed on a
# partial set; --cfg-options test_cfg.on_bad_sample=skip counts and skips them (metrics: bad_samples/skipped)
test_cfg = dict(type='ContainBadSamplesTestLoop', on_bad_sample='raise')
default_hooks = dict(logger=dict(interval=50))
