"""Which parameters train: FIBER / GLIP's ``SOLVER.TUNING_HIGHLEVEL_OVERRIDE`` as configuration."""
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from torch import Tensor


class TuningMode(NamedTuple):
    """A tuning mode.

    Attributes:
        trainable (tuple[str], optional): parameter-name substrings that train; None: every parameter does
            (except what the modules freeze themselves, e.g. ``backbone.frozen_stages``).
        frozen_modules_eval (bool): keep the top-level modules whose parameters are all frozen in eval mode
            (no dropout, drop path or DropBlock), as GLIP does for linear probing (its FREEZE flags).
        prompt_bias (bool): add the learnable per-token text offset before the head (``text_prompt_offset``;
            not called "bias", so FIBER's bias rule of 2x lr and no decay does not apply to it, as in GLIP, whose
            ``tunable_linear.weight`` it is).
    """
    trainable: Optional[Tuple[str, ...]]
    frozen_modules_eval: bool
    prompt_bias: bool


# GLIP's generalized_vl_rcnn.py (linear_prob) and finetune.py (language_prompt_v2), with our parameter names.
TUNING_MODES: Dict[str, TuningMode] = {
    'full': TuningMode(None, False, False),
    # the head's final prediction layers (box, centerness), the text projection of the dot product, its scale
    # and its token biases
    'linear_prob': TuningMode(('bbox_head.head.bbox_pred.', 'bbox_head.head.centerness.',
                               'bbox_head.head.dot_product_projection_text.', 'bbox_head.head.log_scale',
                               'bbox_head.head.bias_lang', 'bbox_head.head.bias0'), True, False),
    # GLIP's prompt tuning: only a (num_tokens, D) offset added to the text features the head sees
    'language_prompt_v2': TuningMode(('text_prompt_offset', ), False, True),
}


def get_tuning_mode(name: str) -> TuningMode:
    if name not in TUNING_MODES:
        raise KeyError(f'unknown tuning_mode {name!r}; choose one of {sorted(TUNING_MODES)}')
    return TUNING_MODES[name]


def freeze_all_but(model: nn.Module, trainable: Tuple[str, ...], mode_name: str) -> List[str]:
    """Set ``requires_grad=False`` on every parameter whose name contains none of ``trainable``.

    Returns:
        list[str]: names of the parameters left trainable. Raises if a key matches nothing (a renamed layer
        would otherwise leave the model silently frozen).
    """
    names = [name for name, _ in model.named_parameters()]
    unmatched = [key for key in trainable if not any(key in name for name in names)]
    if unmatched:
        raise KeyError(f'tuning_mode {mode_name!r}: no parameter name contains {unmatched}')
    kept, count, frozen = [], 0, 0
    for name, param in model.named_parameters():
        if any(key in name for key in trainable):
            kept.append(name)
            count += param.numel()
        else:
            frozen += param.numel()
            param.requires_grad_(False)
    MMLogger.get_current_instance().info(
        f'tuning_mode {mode_name!r}: {len(kept)} parameter tensors ({count:,} values) train, {frozen:,} values '
        f'frozen: {kept[:8]}{" ..." if len(kept) > 8 else ""}')
    return kept


def add_prompt_offset(language: dict, bias: Tensor) -> dict:
    """GLIP's ``language_prompt_v2``: add ``bias`` (T_max, D) to the first T positions of the text features the
    head sees, ``hidden`` and ``embedded`` (B, T, D)."""
    num_tokens = language['hidden'].shape[1]
    if num_tokens > bias.shape[0]:
        raise ValueError(f'{num_tokens} caption tokens but the prompt bias has {bias.shape[0]} rows')
    step = bias[:num_tokens].unsqueeze(0).to(language['hidden'].dtype)
    return dict(language, hidden=language['hidden'] + step, embedded=language['embedded'] + step)


def new_prompt_offset(num_tokens: int, dims: int) -> nn.Parameter:
    """The bias of ``language_prompt_v2``, zero at the start (GLIP fills its ``tunable_linear`` with 0)."""
    return nn.Parameter(torch.zeros(num_tokens, dims))
