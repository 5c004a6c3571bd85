import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS

from fiber_mmdet.engine import FIBEROptimWrapperConstructor

from .conftest import module_with_parameters

BASE_LR, LANG_LR, WD = 1e-4, 1e-5, 0.01

# name -> (lr, weight decay) under FIBER's pre-training recipe (BASE_LR 1e-4, LANG_LR 1e-5, WD 0.01)
EXPECTED = {
    'backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table': (2 * BASE_LR, 0.0),
    'backbone.stages.0.blocks.0.attn.w_msa.qkv.weight': (BASE_LR, WD),
    'backbone.stages.0.blocks.0.attn.w_msa.qkv.bias': (2 * BASE_LR, 0.0),
    'backbone.stages.0.blocks.0.norm1.weight': (BASE_LR, WD),  # LayerNorm weights are decayed
    'language_model.encoder.layer.0.attention.self.query.weight': (LANG_LR, WD),
    'language_model.encoder.layer.0.attention.self.query.bias': (2 * LANG_LR, 0.0),
    'language_model.encoder.layer.0.attention.output.LayerNorm.weight': (LANG_LR, WD),
    'language_model.encoder.layer.6.alpha_t2i': (LANG_LR, WD),
    'bbox_head.bias0': (2 * BASE_LR, 0.0),
    'bbox_head.bias_lang': (2 * BASE_LR, 0.0),
    'bbox_head.log_scale': (BASE_LR, WD),
    'bbox_head.dyconvs.0.gn.weight': (BASE_LR, WD),  # GroupNorm weights are decayed
    'neck.norm.weight': (BASE_LR, WD),
    'neck.norm.bias': (2 * BASE_LR, 0.0),
}
FROZEN = 'backbone.patch_embed.projection.weight'


def _hyperparameters_by_name(model, optimizer):
    by_param = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            by_param[id(param)] = (group['lr'], group['weight_decay'])
    return {name: by_param.get(id(param)) for name, param in model.named_parameters()}


def test_param_groups_follow_fiber_name_rules():
    model = module_with_parameters(list(EXPECTED) + [FROZEN], frozen=(FROZEN, ))
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type='FIBEROptimWrapperConstructor',
            optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD)),
            paramwise_cfg=dict(language_model_lr_mult=LANG_LR / BASE_LR)))
    optim_wrapper = constructor(model)
    assert isinstance(optim_wrapper.optimizer, torch.optim.AdamW)
    got = _hyperparameters_by_name(model, optim_wrapper.optimizer)
    assert got.pop(FROZEN) is None  # frozen parameters are not optimised
    for name, (lr, wd) in EXPECTED.items():
        assert got[name] == pytest.approx((lr, wd), rel=1e-12, abs=0), name
    # tensors sharing (lr, wd) share a group: base, base bias, language, language bias
    assert len(optim_wrapper.optimizer.param_groups) == 4
    assert optim_wrapper.optimizer.param_groups[0]['lr'] == BASE_LR


def test_built_from_optim_wrapper_config_with_custom_keys():
    model = module_with_parameters(
        ['text_encoder.layer.bias', 'backbone.layers.2.alpha_t2i', 'head.weight', 'head.norm.weight'])
    cfg = dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
        clip_grad=dict(max_norm=1.0),
        constructor='FIBEROptimWrapperConstructor',
        paramwise_cfg=dict(
            language_model_key=('text_encoder', 'alpha_t2i'),
            language_model_lr_mult=0.5,
            bias_lr_mult=3.0,
            norm_decay_mult=0.5))
    with DefaultScope.overwrite_default_scope('mmdet'):
        optim_wrapper = build_optim_wrapper(model, cfg)
    got = _hyperparameters_by_name(model, optim_wrapper.optimizer)
    assert got['text_encoder.layer.bias'] == pytest.approx((0.1 * 0.5 * 3.0, 0.0))
    assert got['backbone.layers.2.alpha_t2i'] == pytest.approx((0.1 * 0.5, 1e-4))
    assert got['head.weight'] == pytest.approx((0.1, 1e-4))
    assert got['head.norm.weight'] == pytest.approx((0.1, 0.5e-4))
    assert optim_wrapper.clip_grad_kwargs == dict(max_norm=1.0)


def test_optimizer_without_weight_decay_and_unknown_keys():
    model = module_with_parameters(['a.bias', 'a.weight'])
    constructor = FIBEROptimWrapperConstructor(dict(optimizer=dict(type='SGD', lr=0.1)))
    groups = constructor(model).optimizer.param_groups
    assert sorted(g['lr'] for g in groups) == pytest.approx([0.1, 0.2])
    with pytest.raises(KeyError, match='bias_decay'):
        FIBEROptimWrapperConstructor(dict(optimizer=dict(type='SGD', lr=0.1)), dict(bias_decay=0.0))


def test_custom_keys_multiply_on_top_of_fiber_rules_longest_key_wins():
    model = module_with_parameters(['bbox_head.head.log_scale', 'bbox_head.head.bias0', 'bbox_head.head.weight',
                                    'language_model.layer.0.bias'])
    constructor = FIBEROptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01)),
        dict(custom_keys={'bbox_head': dict(lr_mult=2.0), 'head.log_scale': dict(lr_mult=30.0, decay_mult=0.0),
                          'language_model': dict(decay_mult=0.5)}, language_model_lr_mult=0.1))
    got = _hyperparameters_by_name(model, constructor(model).optimizer)
    assert got['bbox_head.head.log_scale'] == pytest.approx((30 * 1e-3, 0.0))  # longest key only
    assert got['bbox_head.head.bias0'] == pytest.approx((2 * 2 * 1e-3, 0.0))  # bias rule, then the key
    assert got['bbox_head.head.weight'] == pytest.approx((2 * 1e-3, 0.01))
    assert got['language_model.layer.0.bias'] == pytest.approx((0.1 * 2 * 1e-3, 0.0))
    with pytest.raises(KeyError, match='lr_mul'):
        FIBEROptimWrapperConstructor(dict(optimizer=dict(type='SGD', lr=0.1)),
                                     dict(custom_keys={'head': dict(lr_mul=2.0)}))
