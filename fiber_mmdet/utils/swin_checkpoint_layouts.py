"""Swin Transformer classification weights in the three public layouts -> :class:`FusionSwinTransformer` keys.

The same Swin-B (ImageNet-22k) ships in three key layouts:

=============  ==============================================  ==================================================
layout         blocks / merging                                other keys
=============  ==============================================  ==================================================
``official``   ``layers.i.blocks.j.attn.qkv``, ``mlp.fc1``;    ``patch_embed.proj``, final ``norm``, classifier
               ``layers.i.downsample`` ends stage i (i < 3)    ``head``; buffers ``relative_position_index``,
               (microsoft/Swin-Transformer, ``{'model': ...}``) ``attn_mask``
``timm``       as official, but ``layers.i.downsample`` starts  classifier ``head.fc``; no buffers
               stage i (i >= 1)
``mmpretrain`` ``backbone.stages.i.blocks.j.attn.w_msa.qkv``,   ``backbone.patch_embed.projection``,
               ``ffn.layers.0.0``; ``stages.i.downsample``      ``backbone.norm3``, classifier ``head.fc``
               ends stage i; ``{'state_dict': ...}``
=============  ==============================================  ==================================================

Our backbone uses mmpretrain's names (plus the fusion layers), so mmpretrain weights keep their names; official and
timm weights are renamed, and their patch-merging weights (2x2 neighbours concatenated as (0,0), (1,0), (0,1),
(1,1)) are reordered to ``nn.Unfold``'s channel order. Every key of the file is either converted or dropped with
its reason; nothing is skipped silently.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, NamedTuple

from torch import Tensor

from .fiber_checkpoint import _MERGING, _SWIN_RULES, _apply, concat_to_unfold_order

LAYOUTS = ('official', 'timm', 'mmpretrain')

# why a key of the file is not loaded (the values of SwinConversion.dropped)
CLASSIFIER = 'image classifier, not part of the detector'
RECOMPUTED = 'buffer recomputed from the window size'
NOT_BACKBONE = 'not part of the image backbone'


class SwinConversion(NamedTuple):
    """Converted weights and the file keys left out.

    Attributes:
        layout: the detected (or given) layout, one of :data:`LAYOUTS`.
        state_dict: weights under :class:`FusionSwinTransformer` names (no ``backbone.`` prefix).
        dropped: file key -> why it is not loaded.
    """
    layout: str
    state_dict: 'OrderedDict[str, Tensor]'
    dropped: Dict[str, str]


def detect_swin_layout(state: Mapping[str, Tensor]) -> str:
    """Which of :data:`LAYOUTS` the keys of ``state`` follow (``module.`` already stripped).

    Official and timm weights differ by where the patch merging sits: official stage 0 has one, timm's never.

    Raises:
        ValueError: the keys are none of them (the first keys are named).
    """
    keys = list(state)
    if any(k.startswith(('backbone.stages.', 'stages.', 'backbone.patch_embed.projection.',
                         'patch_embed.projection.')) for k in keys):
        return 'mmpretrain'
    if any(k.startswith('layers.0.downsample.') for k in keys):
        return 'official'
    if any(re.match(r'layers\.\d+\.downsample\.', k) for k in keys) or 'head.fc.weight' in state:
        return 'timm'
    if any(k.startswith('layers.') for k in keys):
        return 'official'
    raise ValueError('not a Swin Transformer state dict in the official, timm or mmpretrain layout '
                     f'(first keys: {keys[:5]})')


def _official_name(key: str, layout: str) -> str:
    """The official name of a timm key (timm's merging of stage i is official's merging of stage i - 1)."""
    if layout == 'timm':
        key = re.sub(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) - 1}.downsample.', key)
    return key


def convert_swin_layout(state: Mapping[str, Tensor], num_stages: int = 4, layout: str = 'auto') -> SwinConversion:
    """Convert a Swin classification state dict to :class:`FusionSwinTransformer` names.

    Args:
        state: the file's weights (``module.`` prefixes are stripped here).
        num_stages: stages of the Swin (the official / timm final ``norm`` becomes ``norm{num_stages - 1}``).
        layout: one of :data:`LAYOUTS`, or ``'auto'`` to detect it.

    Raises:
        ValueError: an unknown layout, or keys that belong to none of the layout's rules (named).
    """
    state = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v) for k, v in state.items())
    if layout == 'auto':
        layout = detect_swin_layout(state)
    if layout not in LAYOUTS:
        raise ValueError(f'unknown Swin checkpoint layout {layout!r}; expected one of {LAYOUTS} or "auto"')
    rules = _SWIN_RULES + [(r'^norm\.', f'norm{num_stages - 1}.')]
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    dropped: Dict[str, str] = {}
    unknown = []
    for key, value in state.items():
        if key.endswith(('relative_position_index', 'attn_mask')):
            dropped[key] = RECOMPUTED
            continue
        if layout == 'mmpretrain':
            if key.startswith('backbone.'):
                new = key[len('backbone.'):]
            elif key.startswith(('stages.', 'patch_embed.', 'norm')):
                new = key  # a bare backbone state dict
            else:
                dropped[key] = CLASSIFIER if key.startswith('head.') else NOT_BACKBONE
                continue
        else:
            if key.startswith('head.'):
                dropped[key] = CLASSIFIER
                continue
            new = _apply(rules, _official_name(key, layout))
            if new is None:
                unknown.append(key)
                continue
            if _MERGING.search(new):
                value = concat_to_unfold_order(value)
        out[new] = value
    if unknown:
        raise ValueError(f'{len(unknown)} key(s) of the {layout}-layout Swin checkpoint have no counterpart in the '
                         f'backbone: {unknown[:20]}')
    return SwinConversion(layout, out, dropped)
