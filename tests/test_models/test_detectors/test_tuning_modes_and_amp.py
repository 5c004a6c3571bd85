"""Tuning modes train exactly their parameters (and the optimizer holds nothing else); under autocast the
deformable convolutions and the losses stay float32 (bf16 on the CPU)."""
import copy

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mmdet.structures import DetDataSample
from fiber_mmdet.models.layers import FP32ModulatedDeformConv2d

LINEAR_PROB = ['bbox_head.head.bbox_pred.weight', 'bbox_head.head.bbox_pred.bias', 'bbox_head.head.centerness.weight',
               'bbox_head.head.centerness.bias', 'bbox_head.head.dot_product_projection_text.weight',
               'bbox_head.head.dot_product_projection_text.bias', 'bbox_head.head.log_scale',
               'bbox_head.head.bias_lang', 'bbox_head.head.bias0']


def batch(model, names=('red apple', 'blue chair'), size=96):
    torch.manual_seed(0)
    sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                                         batch_input_shape=(size, size), scale_factor=(1.0, 1.0)))
    sample.text = names
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 12., 50., 60.], [40., 30., 90., 80.]]),
                                       labels=torch.tensor([0, 1]))
    return torch.randn(1, 3, size, size), [sample]


def trained_names(model):
    """Parameters that get a gradient from one training step's loss."""
    inputs, samples = batch(model)
    losses = model.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return sorted(n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0)


def optimizer_names(model, paramwise_cfg=None):
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='FIBEROptimWrapperConstructor', optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=0.05,
                                                                                     weight_decay=0.25)),
        paramwise_cfg=paramwise_cfg))
    wrapper = constructor(model)
    ids = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


@pytest.mark.parametrize('mode,expected', [('linear_prob', LINEAR_PROB),
                                           ('language_prompt_v2', ['text_prompt_offset'])])
def test_tuning_mode_trains_exactly_its_parameters(tiny_model_cfg, mode, expected):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.bbox_head.use_dcn = False
    model = MODELS.build(dict(cfg, tuning_mode=mode))
    model.train()
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == sorted(expected)
    assert optimizer_names(model) == sorted(expected)
    assert trained_names(model) == sorted(expected)
    if mode == 'linear_prob':  # fully frozen modules stay in eval mode (no dropout, drop path, DropBlock)
        assert not model.backbone.training and not model.language_model.training and model.bbox_head.training
    else:
        assert model.text_prompt_offset.shape == (cfg.bbox_head.num_tokens, 64)
        assert model.backbone.training


def test_prompt_bias_changes_the_text_features_and_full_mode_trains_everything(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.bbox_head.use_dcn = False
    torch.manual_seed(0)
    plain = MODELS.build(cfg)
    torch.manual_seed(0)
    prompt = MODELS.build(dict(cfg, tuning_mode='language_prompt_v2'))
    prompt.load_state_dict(plain.state_dict(), strict=False)  # a checkpoint without the bias loads
    plain.eval(), prompt.eval()
    inputs, samples = batch(plain)
    tok = plain.language_model.tokenize(['red apple. blue chair'])
    with torch.no_grad():
        _, lang_a = plain.extract_feat(inputs, tok['input_ids'], tok['attention_mask'])
        _, lang_b = prompt.extract_feat(inputs, tok['input_ids'], tok['attention_mask'])
        assert torch.equal(lang_a['embedded'], lang_b['embedded'])  # zero at the start
        prompt.text_prompt_offset.add_(0.5)
        _, lang_c = prompt.extract_feat(inputs, tok['input_ids'], tok['attention_mask'])
    assert torch.allclose(lang_c['embedded'] - lang_a['embedded'], torch.full_like(lang_a['embedded'], 0.5), atol=1e-5)
    assert all(p.requires_grad for p in plain.parameters())
    with pytest.raises(KeyError, match="unknown tuning_mode 'prompt'"):
        MODELS.build(dict(cfg, tuning_mode='prompt'))


def test_bf16_autocast_keeps_deformable_convolutions_and_losses_in_fp32(tiny_model_cfg):
    """The head's DCNs (mmcv's CPU kernel has no bf16 path) and every loss are float32 under autocast."""
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.bbox_head.use_dcn = True
    cfg.bbox_head.num_dyhead_blocks = 1
    model = MODELS.build(cfg)
    model.train()
    dcns = [m for m in model.modules() if isinstance(m, FP32ModulatedDeformConv2d)]
    assert len(dcns) == 3  # the three branches of the one DyHead block
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype))) for m in dcns]
    inputs, samples = batch(model)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(inputs, samples)
    for h in hooks:
        h.remove()
    # the tower around them ran in bf16 (their inputs arrive bf16), they compute and return float32
    assert seen and all(o == torch.float32 for _, o in seen) and any(i == torch.bfloat16 for i, _ in seen)
    for name in ('loss_cls', 'loss_bbox', 'loss_centerness'):
        assert losses[name].dtype == torch.float32 and torch.isfinite(losses[name]), name
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
