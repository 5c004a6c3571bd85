"""Under AMP the head's deformable convolutions and the losses run in float32, as in the original (checked on
the CPU under bfloat16 autocast)."""
import copy

import torch
from mmcv.ops import ModulatedDeformConv2d
from mmengine.structures import InstanceData

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample


def _head_and_batch(tiny_model_cfg):
    torch.manual_seed(0)
    cfg = copy.deepcopy(tiny_model_cfg.bbox_head)
    cfg.update(use_dcn=True, num_dyhead_blocks=1, num_tokens=8, train_cfg=tiny_model_cfg.train_cfg)
    head = MODELS.build(cfg)
    c = cfg.in_channels
    feats = tuple(torch.randn(1, c, s, s) for s in (8, 4, 2, 1, 1))
    language = dict(hidden=torch.randn(1, 8, cfg.lang_dim), embedded=torch.randn(1, 8, cfg.lang_dim),
                    masks=torch.ones(1, 8, dtype=torch.long))
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64)))
    positive = torch.zeros(1, 8)
    positive[0, 1] = 1
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.]]), labels=torch.tensor([0]),
                                       positive_maps=positive)
    return head, feats, language, [sample]


def test_deformable_convs_and_losses_are_float32_under_bf16_autocast(tiny_model_cfg):
    head, feats, language, samples = _head_and_batch(tiny_model_cfg)
    dcns = [m for m in head.modules() if isinstance(m, ModulatedDeformConv2d)]
    assert dcns
    seen = []
    for m in dcns:
        m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    fp32 = head.loss(feats, language, samples)
    seen.clear()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp = head.loss(feats, language, samples)
    assert len(seen) >= len(dcns) and all(dtype == torch.float32 for dtype in seen), seen  # per level
    for name, value in amp.items():
        assert value.dtype == torch.float32, name
        reference = fp32[name].item()
        assert torch.isfinite(value) and abs(value.item() - reference) <= 0.05 * abs(reference) + 1e-3, \
            (name, value.item(), reference)
