# FIBER-B fine-grained pre-training started from public unimodal weights instead of the coarse-stage checkpoint
# (which configs/fiber_fine_pretrain.py loads): the image side from Swin-B ImageNet-22k (window 12, 384 px), the
# text side from roberta-base. The fusion layers (image->text cross-attention in the fused Swin blocks,
# text->image cross-attention in the fused RoBERTa layers, their gates at 0), the FPN and the head start newly
# initialised; the log lists the weights loaded, the file keys dropped (classifier, recomputed buffers, pooler,
# masked-LM head) and the weights left new, by name. Same data, schedule and frozen stages as the base.
#
# The Swin file may be in any of the three public layouts (detected from its keys; set
# model.backbone.init_cfg.layout to 'official', 'timm' or 'mmpretrain' to insist on one):
#   official  swin_base_patch4_window12_384_22k.pth          (microsoft/Swin-Transformer release)
#   timm      swin_base_patch4_window12_384.ms_in22k         (its model.safetensors or pytorch_model.bin)
#   mmpretrain swin-base_3rdparty_in21k-384px                (its .pth; the ImageNet-22k-to-1k ones also fit)
#   python tools/train.py configs/fiber_fine_pretrain_from_unimodal.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/swin_base_patch4_window12_384_22k.pth
# roberta-base comes from the Hugging Face hub (or its local cache, HF_HUB_OFFLINE=1); the captions of the
# training pipeline are tokenised with the same hub name.
_base_ = './fiber_fine_pretrain.py'

load_from = None  # no FIBER checkpoint: each side starts from its own weights
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='checkpoints/swin_base_patch4_window12_384_22k.pth')),
    # a transformers hub name or a folder written by save_pretrained (weights, config.json, tokenizer files)
    language_model=dict(name='roberta-base', tokenizer='roberta-base', load_pretrained=True))
dataset_help = dict(
    checkpoints='configs/fiber_fine_pretrain_from_unimodal.py, its header: Swin-B ImageNet-22k weights '
    '(official, timm or mmpretrain layout) and roberta-base')
