"""Official FIBER checkpoints -> ``fiber_mmdet`` state dicts.

Every source key is either mapped or dropped on purpose (recomputable buffers and the unused ``cls_logits``);
anything else is an error that names the keys.
"""
import re
from collections import OrderedDict
from typing import Dict, List, NamedTuple

import torch
from torch import Tensor

# The reference's PatchMerging concatenates the 2x2 neighbours as [(0,0), (1,0), (0,1), (1,1)] (row, col);
# OpenMMLab's nn.Unfold-based PatchMerging orders channels as c * 4 + (2 * row + col).
_UNFOLD_FROM_CONCAT = [0, 2, 1, 3]

# our names of the PatchMerging tensors whose last dimension is in the reference's concat order
_MERGING = re.compile(r'downsample\.(reduction\.weight|norm\.weight|norm\.bias)$')


def concat_to_unfold_order(t: Tensor) -> Tensor:
    """Reorder the last dimension (4C, concat order) of a PatchMerging weight or norm to nn.Unfold order."""
    *lead, four_c = t.shape
    c = four_c // 4
    t = t.reshape(*lead, 4, c)[..., _UNFOLD_FROM_CONCAT, :]
    return t.transpose(-1, -2).reshape(*lead, four_c)


# (pattern on the reference key without its module prefix, replacement) — applied in order, first match wins.
_SWIN_RULES = [
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^patch_embed\.norm\.', 'patch_embed.norm.'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.attn\.(qkv|proj|relative_position_bias_table)(\.|$)',
     r'stages.\1.blocks.\2.attn.w_msa.\3\4'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv_text_i2t\.', r'stages.\1.blocks.\2.i2t.text_kv.'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv_i2t\.', r'stages.\1.blocks.\2.i2t.query.'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.attn\.proj_i2t\.', r'stages.\1.blocks.\2.i2t.out_proj.'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.attn\.alpha_i2t$', r'stages.\1.blocks.\2.i2t.gate'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.attn\.norm_i2t_i\.', r'stages.\1.blocks.\2.i2t.query_norm.'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.(norm1|norm2)\.', r'stages.\1.blocks.\2.\3.'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.', r'stages.\1.blocks.\2.ffn.layers.0.0.'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.', r'stages.\1.blocks.\2.ffn.layers.1.'),
    (r'^layers\.(\d+)\.downsample\.(reduction|norm)\.', r'stages.\1.downsample.\2.'),
    (r'^norm(\d+)\.', r'norm\1.'),
]
_FPN_RULES = [
    (r'^fpn_inner([234])\.', lambda m: f'lateral_convs.{int(m.group(1)) - 2}.conv.'),
    (r'^fpn_layer([234])\.', lambda m: f'fpn_convs.{int(m.group(1)) - 2}.conv.'),
    (r'^top_blocks\.p6\.', 'fpn_convs.3.conv.'),
    (r'^top_blocks\.p7\.', 'fpn_convs.4.conv.'),
]
_TEXT_RULES = [(r'^(embeddings\.(word|position|token_type)_embeddings|embeddings\.LayerNorm|encoder\.layer)\.',
                r'\1.')]
_HEAD_RULES = [
    (r'^dyhead_tower\.(\d+)\.DyConv\.', r'dyhead_tower.\1.dyconvs.'),
    (r'^dyhead_tower\.(\d+)\.AttnConv\.', r'dyhead_tower.\1.attnconv.'),
    (r'^(dyhead_tower\.\d+\.(relu|offset)|bbox_pred|centerness|dot_product_projection_text|scales\.\d+)\.',
     r'\1.'),
    (r'^(log_scale|bias_lang|bias0)$', r'\1'),
]
# recomputed from the configuration, or never used (cls_logits: its loss is x0 and scores use the tokens)
_DROPPED = [r'relative_position_index$', r'embeddings\.position_ids$', r'^rpn\.anchor_generator\.',
            r'^rpn\.head\.cls_logits\.']

# in coarse-stage checkpoints: the cross-attention's own LayerNorm (the fine-grained model has none)
_COARSE_ONLY = [r'crossattention\w*\.output\.LayerNorm\.']

# (source prefix, rules, target prefix)
_FINE_GRAINED = [
    ('fusion_backbone.backbone.body.', _SWIN_RULES, 'backbone.'),
    ('fusion_backbone.backbone.fpn.', _FPN_RULES, 'neck.'),
    ('fusion_backbone.language_backbone.body.model.', _TEXT_RULES, 'language_model.model.'),
    ('rpn.head.', _HEAD_RULES, 'bbox_head.head.'),
]
# coarse-stage (ViLT-style) checkpoints used to initialise the fine-grained pre-training
_COARSE = [
    ('vit_model.', _SWIN_RULES, 'backbone.'),
    ('text_transformer.', _TEXT_RULES, 'language_model.model.'),
]


class ConversionResult(NamedTuple):
    """Converted state dict, and what was left out."""
    state_dict: 'OrderedDict[str, Tensor]'
    dropped: List[str]
    version: str


def _apply(rules, key: str):
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key, count=1)
        if n:
            return new
    return None


def unwrap_checkpoint(ckpt, use_ema: bool = False) -> Dict[str, Tensor]:
    """The model weights of a checkpoint file's content (``model`` or ``model_ema``; ``module.`` stripped).

    Raises:
        KeyError: ``use_ema`` but the file has no ``model_ema``.
    """
    if isinstance(ckpt, dict) and ('model' in ckpt or 'model_ema' in ckpt or 'state_dict' in ckpt):
        if use_ema:
            if 'model_ema' not in ckpt:
                raise KeyError(f'EMA weights asked for, but the checkpoint has no model_ema (only {sorted(ckpt)})')
            state = ckpt['model_ema']
        else:
            state = ckpt.get('model', ckpt.get('state_dict'))
    else:
        state = ckpt
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def detect_version(state: Dict[str, Tensor]) -> str:
    """``'v3'`` when the image→text query has its LayerNorm (``norm_i2t_i``), else ``'v2'``."""
    return 'v3' if any('norm_i2t_i' in k for k in state) else 'v2'


def convert_fiber_state_dict(state: Dict[str, Tensor], coarse: bool = False) -> ConversionResult:
    """Map reference key names to ours.

    Args:
        state: reference state dict (``module.`` already stripped, see :func:`unwrap_checkpoint`).
        coarse: the source is a coarse-stage init checkpoint (``vit_model.`` / ``text_transformer.``
            prefixes); its extra heads and LayerNorms that the fine-grained model does not have are dropped
            and listed instead of being an error.

    Raises:
        ValueError: keys that are neither mapped nor known to be droppable (named in the message), or a
            checkpoint that is not FIBER's.
    """
    groups = _COARSE if coarse else _FINE_GRAINED
    drop = _DROPPED + (_COARSE_ONLY if coarse else [])
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    dropped, unknown = [], []
    for key, value in state.items():
        if any(re.search(p, key) for p in drop):
            dropped.append(key)
            continue
        new = None
        for src, rules, dst in groups:
            if key.startswith(src):
                mapped = _apply(rules, key[len(src):])
                if mapped is not None:
                    new = dst + mapped
                break
        if new is None:
            (dropped if coarse else unknown).append(key)
            continue
        if _MERGING.search(new):
            value = concat_to_unfold_order(value)
        out[new] = value
    if unknown:
        raise ValueError(f'{len(unknown)} key(s) of the checkpoint are not FIBER fine-grained weights: '
                         f'{unknown[:20]}')
    if not any(k.startswith('backbone.') for k in out):
        raise ValueError('no FIBER backbone weights found: is this a FIBER checkpoint? '
                         f'(first keys: {list(state)[:5]})')
    return ConversionResult(out, dropped, detect_version(state))


def load_fiber_checkpoint(path: str, use_ema: bool = False, coarse: bool = False) -> ConversionResult:
    """Read an official FIBER ``.pth`` and convert it."""
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    return convert_fiber_state_dict(unwrap_checkpoint(ckpt, use_ema), coarse=coarse)


def load_converted_state_dict(model: torch.nn.Module, state_dict: Dict[str, Tensor]) -> None:
    """Load a converted state dict; only recomputed buffers may be missing.

    Raises:
        RuntimeError: weights missing from the checkpoint or left over, listed.
    """
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.endswith('relative_position_index')]
    if missing or unexpected:
        raise RuntimeError(f'checkpoint does not match the model: {len(missing)} missing {missing[:10]}, '
                           f'{len(unexpected)} unexpected {unexpected[:10]}')
