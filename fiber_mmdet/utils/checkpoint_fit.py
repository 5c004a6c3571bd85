"""Does a checkpoint fit the model it is loaded into? Checked key by key and shape by shape, with the likely cause.

MMEngine's ``load_checkpoint`` (used by the Runner's ``load_from``, ``tools/test.py``, mmdet's ``init_detector``
and ``DetInferencer``) loads with ``strict=False``: missing, unexpected and size-mismatched weights are only
printed and the model runs on with random weights. :func:`check_checkpoint_fits` is called by the FIBER detector
when its state dict is loaded, so the check holds on every one of those paths.
"""
import re
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

# Weights a fitting checkpoint may lack or carry: buffers the model recomputes and the original's converter drops.
DEFAULT_ALLOWED_MISSING = (r'relative_position_index$', r'num_batches_tracked$')
DEFAULT_ALLOWED_UNEXPECTED = (r'relative_position_index$', r'num_batches_tracked$', r'position_ids$')
# Prefixes of the original FIBER / maskrcnn-benchmark checkpoints (``module.`` already stripped by MMEngine).
_ORIGINAL_PREFIXES = ('backbone.body.', 'backbone.fpn.', 'language_backbone.', 'rpn.head.', 'rpn.anchor_generator')
_CONVERTER = 'python tools/model_converters/fiber_to_mmdet.py ORIGINAL.pth CONVERTED.pth'


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's weights do not fit the model (keys or shapes)."""


@dataclass
class CheckpointFit:
    """How a checkpoint's tensors compare with a model's state dict (keys without the load prefix)."""
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint, model) shapes
    matched: int = 0

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 5) -> str:
        parts = []
        if self.missing:
            parts.append(f'{len(self.missing)} missing (first: {self.missing[:limit]})')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} unexpected (first: {self.unexpected[:limit]})')
        if self.mismatched:
            shown = [f'{k}: checkpoint {tuple(c)} vs model {tuple(m)}' for k, c, m in self.mismatched[:limit]]
            parts.append(f'{len(self.mismatched)} of another size (first: {shown})')
        return '; '.join(parts)


def compare_state_dicts(model_state: Mapping[str, torch.Tensor], checkpoint: Mapping[str, object],
                        allowed_missing: Sequence[str] = DEFAULT_ALLOWED_MISSING,
                        allowed_unexpected: Sequence[str] = DEFAULT_ALLOWED_UNEXPECTED) -> CheckpointFit:
    """Missing, unexpected and size-mismatched keys of ``checkpoint`` against ``model_state``; keys matching
    an allow-list pattern (``re.search``) are left out. Non-tensor checkpoint entries count as unexpected."""
    fit = CheckpointFit()
    for key, value in model_state.items():
        if key not in checkpoint:
            if not any(re.search(p, key) for p in allowed_missing):
                fit.missing.append(key)
            continue
        given = checkpoint[key]
        if not isinstance(given, torch.Tensor):
            fit.unexpected.append(key)
        elif tuple(given.shape) != tuple(value.shape) and not (value.dim() == 0 and tuple(given.shape) == (1, )):
            # (torch loads a (1,) tensor into a 0-dim one, e.g. the original's DyHead ``scales``)
            fit.mismatched.append((key, tuple(given.shape), tuple(value.shape)))
        else:
            fit.matched += 1
    fit.unexpected += [k for k in checkpoint if k not in model_state
                       and not any(re.search(p, k) for p in allowed_unexpected)]
    return fit


def likely_cause(fit: CheckpointFit, checkpoint_keys: Sequence[str], model_keys: Sequence[str]) -> str:
    """A sentence on why a checkpoint does not fit (unconverted original, v2 vs v3, another model size...)."""
    if any(k in ('model', 'model_ema') or k.startswith(_ORIGINAL_PREFIXES) for k in checkpoint_keys):
        return f'this is an original (unconverted) FIBER checkpoint: convert it first with `{_CONVERTER}`'
    if fit.matched == 0 and not fit.mismatched:
        return ('no key of the checkpoint is a weight of this model: it is not a fiber_mmdet FIBER checkpoint '
                f'(first checkpoint keys: {list(checkpoint_keys)[:5]})')
    causes = []
    query_norm = [k for k in fit.missing + fit.unexpected if 'query_norm.' in k]
    if query_norm:
        if any(k in fit.missing for k in query_norm):
            causes.append('the model is FIBER v3 (backbone.i2t_query_norm=True) but the checkpoint is v2: '
                          'set backbone.i2t_query_norm=False')
        else:
            causes.append('the checkpoint is FIBER v3 (RefCOCO models) but the model is v2: set '
                          'backbone.i2t_query_norm=True')
    word = [m for m in fit.mismatched if m[0].endswith('word_embeddings.weight')]
    if word:
        causes.append(f'the checkpoint\'s text model has {word[0][1][0]} token embeddings, this model '
                      f'{word[0][2][0]}: another tokenizer / language_model.config.vocab_size')
    if len(fit.mismatched) > len(word) or any(re.search(r'\.(stages|blocks|layer)\.\d+\.', k)
                                              for k in fit.missing + fit.unexpected if 'query_norm.' not in k):
        causes.append('the checkpoint is of a model of another size or depth (e.g. FIBER-B, '
                      'configs/_base_/models/fiber_b.py, against the small FIBER of fiber_tiny.py / the toy '
                      'config): use the config it was trained with')
    return '; '.join(causes) or 'the model config differs from the one the checkpoint was trained with'


def check_checkpoint_fits(model: nn.Module, state_dict: Mapping[str, object], prefix: str = '',
                          allow_partial: bool = False, allowed_missing: Sequence[str] = (),
                          allowed_unexpected: Sequence[str] = (), logger=None,
                          what: Optional[str] = None) -> CheckpointFit:
    """Check that the entries of ``state_dict`` under ``prefix`` fit ``model`` before they are loaded.

    Args:
        model: the module being loaded (its ``state_dict()`` keys, without ``prefix``).
        state_dict: what ``_load_from_state_dict`` receives (may hold keys of other modules).
        prefix: this module's prefix in ``state_dict`` (``''``, ``'module.'`` for an EMA copy or DDP).
        allow_partial: load what fits on purpose (fine-tuning with new parts); the counts are logged.
        allowed_missing / allowed_unexpected: extra regex patterns of keys that may be absent / extra.
        logger: where the partial-load counts go (MMEngine's current logger by default).
        what: the model's name in messages.

    Raises:
        CheckpointMismatchError: the checkpoint does not fit and ``allow_partial`` is False; the message names
            the first keys of each kind and the likely cause.
    """
    given = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    model_state = model.state_dict()
    fit = compare_state_dicts(model_state, given, DEFAULT_ALLOWED_MISSING + tuple(allowed_missing),
                              DEFAULT_ALLOWED_UNEXPECTED + tuple(allowed_unexpected))
    if fit.fits:
        return fit
    what = what or type(model).__name__
    if not allow_partial:
        raise CheckpointMismatchError(
            f'the checkpoint does not fit the {what} model: {fit.summary()}. Likely cause: '
            f'{likely_cause(fit, list(given), list(model_state))}. To load only what fits on purpose (e.g. '
            f'fine-tuning with new parts), set model.checkpoint_fit.allow_partial=True '
            f'(--cfg-options model.checkpoint_fit.allow_partial=True).')
    if logger is None:
        from mmengine.logging import MMLogger
        logger = MMLogger.get_current_instance()
    logger.warning(f'partial checkpoint load into {what} (checkpoint_fit.allow_partial=True): {fit.matched} of '
                   f'{len(model_state)} tensors loaded; {fit.summary()} (these keep their initial values)')
    return fit
