# FIBER-B v3 fine-tuned on RefCOCO / RefCOCO+ / RefCOCOg (refcoco.yaml), shared by
# ../fiber_b_v3_refcoco{,_plus,g}_finetune.py: from the refexp initialisation (the coarse-then-fine checkpoint
# for referring expressions, converted), MDETR's finetune_<dataset>_train.json read as ODVG grounding data (the
# expression is the caption, its box the one region), **no flip** (expressions say "left" and "right"), 20 epochs
# at a global batch of 16 (8 GPUs x 2), validated every epoch with GIoU P@1 on the val split, best checkpoint
# kept; tools/test.py then evaluates every split. Published (val / testA / testB): RefCOCO 90.68 / 92.59 /
# 87.26, RefCOCO+ 85.74 / 90.13 / 79.38, RefCOCOg (val / test) 87.11 / 87.32.
_base_ = ['./refexp_splits.py', '../../_base_/fiber_b_finetune.py']

load_from = 'checkpoints/fiber_coarse_then_fine_for_refexp_mmdet.pth'
dataset_help = {
    '_delete_': True,  # the zero-shot base's help is one string
    'checkpoints': 'README.md, section "Converting an official checkpoint" (fiber_coarse_then_fine_for_refexp.pth)',
    '_train_vg': 'docs/datasets.md, section "Fine-tuning data", RefCOCO/+/g (mmdet\'s refcoco2odvg.py)',
    'default': 'docs/datasets.md, section "Evaluation data", RefCOCO/+/g',
}
model = dict(backbone=dict(with_cp=True))

# ODVG grounding samples: the caption is kept and tokens_positive built from the region's spans
caption = dict(type='ODToGroundingCaption', tokenizer_name=_base_.lang_model_name, max_tokens=256)
train_pipeline = _base_.finetune_load + [caption] + [
    dict(type='ShortSideResize', short_sides=(480, 560, 640, 720, 800), max_long_side=1333),
    dict(type='RandomFlip_GLIP', prob=0.0),
    dict(type='PackDetInputs', meta_keys=_base_.finetune_meta_keys)
]
max_epochs = 20
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=2000),
    dict(type='FractionMultiStepLR', fractions=(0.67, 0.89), gamma=0.1, begin=0, end=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(checkpoint=_base_.finetune_checkpoint_hook)


def _train_set(dataset: str) -> dict:
    """The ODVG training set of ``dataset`` ('refcoco', 'refcoco+', 'refcocog')."""
    return dict(type='FilteredODVGDataset', data_root=_base_.data_root,
                ann_file=f'mdetr_annotations/finetune_{dataset}_train_vg.json', data_prefix=dict(img='train2014/'),
                pipeline=train_pipeline)


refexp_train_sets = {name: _train_set(name) for name in ('refcoco', 'refcoco+', 'refcocog')}
train_dataloader = dict(batch_size=2, batch_sampler=None)  # the refcoco yaml: no aspect-ratio grouping
