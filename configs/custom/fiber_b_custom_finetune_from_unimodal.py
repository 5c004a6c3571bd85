# FIBER-B fine-tuned on your own COCO-format data (as configs/custom/fiber_b_custom_finetune.py, same data layout
# and recipe) when no FIBER checkpoint is at hand: the image side starts from Swin-B ImageNet-22k (window 12,
# 384 px), the text side from roberta-base, and the fusion layers, the FPN and the head from scratch. Without
# vision-language pre-training the fusion layers learn only from your data: expect lower AP than from a FIBER
# checkpoint, above all with few images. The Swin file may be in the official, timm or mmpretrain layout (see
# configs/fiber_fine_pretrain_from_unimodal.py).
#   python tools/train.py configs/custom/fiber_b_custom_finetune_from_unimodal.py --cfg-options \
#       data_root=data/my_dataset/ model.backbone.init_cfg.checkpoint=checkpoints/swin_base_patch4_window12_384_22k.pth
# roberta-base: a hub name, or a local copy with model.language_model.name=DIR model.language_model.tokenizer=DIR.
_base_ = './fiber_b_custom_finetune.py'

load_from = None  # no FIBER checkpoint: each side starts from its own weights
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='checkpoints/swin_base_patch4_window12_384_22k.pth')),
    # a transformers hub name or a folder written by save_pretrained (weights, config.json, tokenizer files)
    language_model=dict(name='roberta-base', tokenizer='roberta-base', load_pretrained=True))
dataset_help = dict(
    checkpoints='configs/fiber_fine_pretrain_from_unimodal.py, its header: Swin-B ImageNet-22k weights '
    '(official, timm or mmpretrain layout) and roberta-base')
