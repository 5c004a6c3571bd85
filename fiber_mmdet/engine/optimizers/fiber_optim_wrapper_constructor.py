"""FIBER's optimizer parameter groups (reference: ``MB/solver/build.py``, ``make_optimizer``)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FIBEROptimWrapperConstructor:
    """Build an optimizer whose per-parameter lr and weight decay follow FIBER.

    For every trainable parameter, by its full name (``model.named_parameters()``, wrapper prefix removed):

    1. ``lr = base_lr``; ``lr = base_lr * language_model_lr_mult`` if the name contains ``language_model_key``
       (or one of them, if it is a tuple). In FIBER this covers everything under ``language_backbone``, the
       fused text layers' ``alpha_t2i`` and text cross-attention included.
    2. If the name contains ``bias_key`` -- a *substring* test, so ``relative_position_bias_table``,
       ``bias_lang`` and ``bias0`` match too -- ``lr *= bias_lr_mult`` and
       ``weight_decay = base_wd * bias_decay_mult``. A bias inside the language model thus gets the language lr
       times ``bias_lr_mult``.
    3. If the name contains any of ``norm_keys``, ``weight_decay *= norm_decay_mult`` (1.0 in FIBER: LayerNorm
       and GroupNorm weights *are* decayed).
    4. ``custom_keys`` (as MMEngine's, on top of the rules above): the longest key contained in the name
       multiplies the lr by its ``lr_mult`` and the weight decay by its ``decay_mult`` (both default 1). FIBER
       uses none; e.g. a model trained from scratch can let the head's logit scale ``log_scale`` move faster.

    Parameters with ``requires_grad=False`` are left out. The reference makes one group per tensor; here the
    tensors that share (lr, weight decay) are merged into one group, which is the same optimisation (AdamW and
    SGD treat the parameters of a group independently) with far fewer groups. Groups are ordered by rule
    (plain parameters first), so the first group -- the one MMEngine logs as ``lr`` -- is the base one.

    MMEngine's ``DefaultOptimWrapperConstructor`` cannot express this: its ``bias_lr_mult`` only sees
    parameters literally called ``bias``, and its ``custom_keys`` apply one key per parameter, so the language
    lr and the bias multiplier cannot be combined.

    Args:
        optim_wrapper_cfg (dict): The optim wrapper config, with ``optimizer`` (its ``lr`` is the base lr, its
            ``weight_decay`` the base weight decay).
        paramwise_cfg (dict, optional): Overrides of the defaults
            ``dict(bias_key='bias', bias_lr_mult=2.0, bias_decay_mult=0.0, language_model_key='language_model',
            language_model_lr_mult=1.0, norm_keys=('norm', 'Norm'), norm_decay_mult=1.0, custom_keys={})``.
            The language lr is given relative to the base lr: FIBER's pre-training (BASE_LR 1e-4, LANG_LR 1e-5)
            is ``language_model_lr_mult=0.1``, its COCO fine-tuning (1e-5 / 1e-5) is 1.0.

    Example:
        >>> optim_wrapper = dict(
        ...     type='OptimWrapper',
        ...     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01),
        ...     constructor='FIBEROptimWrapperConstructor',
        ...     paramwise_cfg=dict(language_model_lr_mult=0.1))
    """

    DEFAULTS = dict(
        bias_key='bias',
        bias_lr_mult=2.0,
        bias_decay_mult=0.0,
        language_model_key='language_model',
        language_model_lr_mult=1.0,
        norm_keys=('norm', 'Norm'),
        norm_decay_mult=1.0,
        custom_keys={})

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        if not isinstance(optim_wrapper_cfg, dict) or 'optimizer' not in optim_wrapper_cfg:
            raise TypeError('optim_wrapper_cfg must be a dict with an "optimizer" entry, '
                            f'got {optim_wrapper_cfg!r}')
        self.optim_wrapper_cfg = optim_wrapper_cfg.copy()
        self.optimizer_cfg = self.optim_wrapper_cfg.pop('optimizer')
        if 'lr' not in self.optimizer_cfg:
            raise ValueError('FIBEROptimWrapperConstructor needs optimizer.lr (the base learning rate)')
        self.base_lr: float = self.optimizer_cfg['lr']
        self.base_wd: Optional[float] = self.optimizer_cfg.get('weight_decay', None)

        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - set(self.DEFAULTS)
        if unknown:
            raise KeyError(f'unknown paramwise_cfg keys {sorted(unknown)}; '
                           f'FIBEROptimWrapperConstructor accepts {sorted(self.DEFAULTS)}')
        options = {**self.DEFAULTS, **paramwise_cfg}
        self.bias_key: str = options['bias_key']
        self.bias_lr_mult: float = options['bias_lr_mult']
        self.bias_decay_mult: float = options['bias_decay_mult']
        language_model_key = options['language_model_key']
        if isinstance(language_model_key, str):
            language_model_key = (language_model_key, )
        self.language_model_keys: Tuple[str, ...] = tuple(language_model_key)
        self.language_model_lr_mult: float = options['language_model_lr_mult']
        norm_keys = options['norm_keys']
        self.norm_keys: Tuple[str, ...] = (norm_keys, ) if isinstance(norm_keys, str) else tuple(norm_keys)
        self.norm_decay_mult: float = options['norm_decay_mult']
        self.custom_keys: Dict[str, Dict[str, float]] = {}
        for key, mults in dict(options['custom_keys']).items():
            extra = set(mults) - {'lr_mult', 'decay_mult'}
            if extra:
                raise KeyError(f'custom_keys[{key!r}] has unknown entries {sorted(extra)}; use lr_mult / decay_mult')
            self.custom_keys[key] = dict(lr_mult=mults.get('lr_mult', 1.0), decay_mult=mults.get('decay_mult', 1.0))

    def param_rules(self, name: str) -> Tuple[bool, bool, bool, str]:
        """Which rules apply to the parameter called ``name``: (language model, bias, norm, custom key or '')."""
        custom = max((key for key in self.custom_keys if key in name), key=len, default='')
        return (any(key in name for key in self.language_model_keys), self.bias_key in name,
                any(key in name for key in self.norm_keys), custom)

    def param_hyperparameters(self, name: str) -> Dict[str, float]:
        """The lr (and weight decay, if the optimizer has one) of the parameter called ``name``."""
        in_language_model, is_bias, is_norm, custom = self.param_rules(name)
        lr = self.base_lr * self.language_model_lr_mult if in_language_model else self.base_lr
        weight_decay = self.base_wd
        if is_bias:
            lr = lr * self.bias_lr_mult
            if weight_decay is not None:
                weight_decay = self.base_wd * self.bias_decay_mult
        if weight_decay is not None and is_norm:
            weight_decay = weight_decay * self.norm_decay_mult
        if custom:
            lr = lr * self.custom_keys[custom]['lr_mult']
            if weight_decay is not None:
                weight_decay = weight_decay * self.custom_keys[custom]['decay_mult']
        hyper = dict(lr=lr)
        if weight_decay is not None:
            hyper['weight_decay'] = weight_decay
        return hyper

    def build_param_groups(self, model: nn.Module) -> List[dict]:
        """Group the trainable parameters of ``model`` by their (lr, weight decay).

        Groups come in the order of the rules that made them (plain parameters first, then biases, then the
        language model's), so the first group is the base one whatever the module order.
        """
        by_rules: Dict[Tuple[bool, bool, bool, str], List[Tuple[str, nn.Parameter]]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                by_rules.setdefault(self.param_rules(name), []).append((name, param))
        groups: Dict[Tuple[float, ...], dict] = {}
        names: Dict[Tuple[float, ...], List[str]] = {}
        for rules in sorted(by_rules):
            for name, param in by_rules[rules]:
                hyper = self.param_hyperparameters(name)
                key = tuple(hyper.values())
                if key not in groups:
                    groups[key] = dict(params=[], **hyper)
                    names[key] = []
                groups[key]['params'].append(param)
                names[key].append(name)
        for key, group in groups.items():
            hyper = ', '.join(f'{k}={v:g}' for k, v in group.items() if k != 'params')
            print_log(f'param group ({hyper}): {len(names[key])} tensors, e.g. {_examples(names[key])}',
                      logger='current')
        return list(groups.values())

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = self.build_param_groups(model)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(optim_wrapper_cfg, default_args=dict(optimizer=optimizer))


def _examples(names: Sequence[str], count: int = 3) -> str:
    shown = ', '.join(names[:count])
    return shown + (', ...' if len(names) > count else '')
