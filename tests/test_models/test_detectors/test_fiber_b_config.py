"""FIBER-B as configured in configs/_base_/models/fiber_b.py has the original's module tree."""
import os.path as osp

from mmengine.config import Config

from mmdet.registry import MODELS

# roberta-base's sizes, so the model builds without the hub
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, hidden_act='gelu', layer_norm_eps=1e-5)


def test_fiber_b_parameter_count(repo_root, tokenizer_dir):
    cfg = Config.fromfile(osp.join(repo_root, 'configs', '_base_', 'models', 'fiber_b.py'))
    cfg.model.language_model.update(name=None, config=ROBERTA_BASE, tokenizer=tokenizer_dir)
    model = MODELS.build(cfg.model)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # 252,055,304 in the original, which also has the dead 20,560-parameter cls_logits layer
    assert count(model) == 252_055_304 - 20_560
    assert count(model.backbone) == 99_479_422
    assert count(model.neck) == 3_409_920
    assert count(model.language_model) == 137_442_822
    assert count(model.bbox_head) == 11_723_140 - 20_560
    fused = [n for n, m in model.backbone.named_modules() if n.endswith('.i2t')]
    assert fused == [f'stages.2.blocks.{b}.i2t' for b in (14, 15, 16, 17)] + [f'stages.3.blocks.{b}.i2t' for b in (0, 1)]
    assert sum(p.numel() for n, p in model.backbone.named_parameters() if '.i2t.' in n) == 12_599_302
    del model
