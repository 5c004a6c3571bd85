# FIBER-B fine-tuned on ODinW datasets, k-shot or full (FIBER's
# tools/finetune.py with the fine_grained README command). Used through the protocol tool, which runs every
# dataset x shot setting x seed and tabulates the test AP of each run's best checkpoint:
#   python tools/odinw_finetune.py configs/odinw/fiber_b_odinw13_finetune.py CKPT --shots 1 3 5 10 0 \
#       --seeds 3 30 300 --gpus 8
# (python tools/odinw_finetune.py ... --write-configs writes each run's config for tools/train.py instead).
#
# Per run: the k-shot subset of the train split (FewShotCocoDataset: images in id order, k images per category,
# deterministic), repeated GENERAL_COPY times per epoch (8 / 4 / 2 / 1 / 1 for 1 / 3 / 5 / 10 / all shots); AdamW
# lr 1e-4 (text 1e-5), weight decay 0.05, FIBER's bias rule, gradient clipping 1.0, AMP, no EMA, no warmup;
# patch embedding + Swin stage 0 frozen; global batch 4; up to 200 epochs, validation every epoch on the
# dataset's validation split with its prompt (class names or caption prompt, as zero-shot); lr x0.1 when the
# validation AP has not improved for more than 3 validations (PyTorch's ReduceLROnPlateau, patience 3, which
# the original's WarmupReduceLROnPlateau is); stop after 8 validations in a row below the best; the best
# checkpoint (a tie also saves) is then tested on the test split.
_base_ = ['./odinw_datasets.py', '../../_base_/fiber_b_finetune.py']

dataset_help = {
    '_delete_': True,  # the zero-shot base's help is one string
    'checkpoints': 'README.md, section "Converting an official checkpoint" (the fine-grained FIBER-B model)',
    'default': 'docs/datasets.md, section "Evaluation data", ODinW (GLIP\'s download has train / valid / test splits)',
}
model = dict(backbone=dict(frozen_stages=1))  # FREEZE_CONV_BODY_AT 2: patch embedding + stage 0
# captions: the class names in label order (with the dataset's caption prompt), built by the detector from the
# class list, not shuffled (DISABLE_SHUFFLE True)
train_pipeline = _base_.finetune_load + _base_.finetune_resize_flip
monitor = 'coco/bbox_mAP'

max_epochs = 200
train_cfg = dict(max_epochs=max_epochs)
train_dataloader = dict(batch_size=4, batch_sampler=None)  # global batch 4; the protocol divides it over GPUs
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(language_model_lr_mult=0.1))  # text lr 1e-5
param_scheduler = [
    dict(type='ReduceOnPlateauLR', monitor=monitor, rule='greater', factor=0.1, patience=3, by_epoch=True)
]
custom_hooks = [dict(type='EarlyStoppingHook', monitor=monitor, rule='greater', min_delta=0.0, patience=8)]
default_hooks = dict(
    checkpoint=dict(_base_.finetune_checkpoint_hook, save_best=monitor),
    logger=dict(interval=10))
auto_scale_lr = dict(base_batch_size=4)


def _finetune_entry(entry, odinw13):
    """Data of one table entry for fine-tuning: its class names, caption prompt and train / val / test files."""
    json_name = 'annotations_without_background.json'
    classes = entry['classes']
    if odinw13 and 'odinw13_classes' in entry:
        classes = entry['odinw13_classes']
    elif entry.get('renamed', False):
        json_name = 'new_' + json_name

    def split(name):
        if entry['folder'].endswith('export/'):  # a Roboflow export: one image folder for all splits
            return dict(ann_file=f'{name}_{json_name}', img='')
        folder = dict(train='train/', val='valid/', minival='mini_val/', test='test/')[name]
        return dict(ann_file=folder + json_name, img=folder)

    out = dict(name=entry['name'], data_root=_base_.odinw_data_root + entry['folder'], classes=classes,
               train=split('train'), val=split(entry['split']), test=split('test'))
    if 'caption_prompt' in entry:
        out['caption_prompt'] = entry['caption_prompt']
    return out


# What tools/odinw_finetune.py reads (fiber_mmdet/engine/finetune_protocol.py). Each config below picks its
# datasets from these tables and sets ``odinw = None`` and ``finetune_tables = None``.
finetune_tables = dict(
    odinw13=[_finetune_entry(e, True) for e in _base_.odinw['table'] if e['name'] in _base_.odinw['odinw13_names']],
    odinw35=[_finetune_entry(e, False) for e in _base_.odinw['table']])
finetune_protocol = dict(
    datasets=None,
    # shots -> GENERAL_COPY (--custom_shot_and_epoch_and_general_copy 1_200_8 3_200_4 5_200_2 10_200_1 0_200_1)
    general_copy=[[1, 8], [3, 4], [5, 2], [10, 1], [0, 1]],
    global_batch_size=4,
    monitor=monitor,
    box_check='warn')  # Roboflow exports have boxes a little past the border; the pipeline clips them
