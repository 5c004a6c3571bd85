import os.path as osp
import subprocess
import sys

import pytest
import torch

from fiber_mmdet.utils.fiber_checkpoint import (concat_to_unfold_order, convert_fiber_state_dict,
                                                 unwrap_checkpoint)


@pytest.fixture(scope='module')
def fixture_state(reference_root):
    return torch.load(osp.join(reference_root, 'tiny_v2', 'checkpoint.pth'), map_location='cpu',
                      weights_only=True)['model']


def test_patch_merging_reorder_matches_concat_merging():
    """mmcv's nn.Unfold PatchMerging with converted weights == the original's concat PatchMerging."""
    from mmcv.cnn.bricks.transformer import PatchMerging
    torch.manual_seed(0)
    C = 6
    x = torch.randn(2, 4 * 6, C)  # (B, H*W, C) with H=4, W=6
    norm_w, norm_b, red_w = torch.randn(4 * C), torch.randn(4 * C), torch.randn(2 * C, 4 * C)
    grid = x.view(2, 4, 6, C)
    cat = torch.cat([grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]], -1)
    want = torch.nn.functional.layer_norm(cat.view(2, -1, 4 * C), (4 * C,), norm_w, norm_b) @ red_w.T
    merge = PatchMerging(in_channels=C, out_channels=2 * C)
    merge.load_state_dict({'norm.weight': concat_to_unfold_order(norm_w), 'norm.bias': concat_to_unfold_order(norm_b),
                           'reduction.weight': concat_to_unfold_order(red_w)})
    got, size = merge(x, (4, 6))
    assert size == (2, 3)
    assert torch.allclose(got, want, atol=1e-5)


def test_every_key_is_mapped_or_dropped_on_purpose(fixture_state):
    state = fixture_state
    result = convert_fiber_state_dict(state)
    assert len(result.state_dict) + len(result.dropped) == len(state) == 806
    assert sorted({k.rsplit('.', 1)[-1] for k in result.dropped if 'anchor' not in k and 'cls_logits' not in k}) == \
        ['position_ids', 'relative_position_index']
    assert result.version == 'v2'
    assert 'backbone.stages.3.blocks.1.i2t.gate' in result.state_dict
    assert 'bbox_head.head.dyhead_tower.5.dyconvs.2.conv.weight' in result.state_dict
    assert 'language_model.model.encoder.layer.11.crossattention_t2i.self.key.weight' in result.state_dict


def test_unknown_keys_are_named(fixture_state):
    state = dict(fixture_state)
    state['rpn.head.something_new.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match='something_new'):
        convert_fiber_state_dict(state)
    with pytest.raises(ValueError, match='not a FIBER|not FIBER'):
        convert_fiber_state_dict({'conv1.weight': torch.zeros(1)})


def test_unwrap_module_prefix_and_ema():
    state = {'module.a': torch.ones(1)}
    assert list(unwrap_checkpoint({'model': state})) == ['a']
    assert list(unwrap_checkpoint({'model': state, 'model_ema': {'module.b': torch.ones(1)}}, use_ema=True)) == ['b']
    with pytest.raises(KeyError, match='model_ema'):
        unwrap_checkpoint({'model': state}, use_ema=True)


def test_coarse_stage_prefixes(fixture_state):
    state = fixture_state
    swin = 'fusion_backbone.backbone.body.'
    text = 'fusion_backbone.language_backbone.body.model.'
    coarse = {('vit_model.' + k[len(swin):]) if k.startswith(swin) else ('text_transformer.' + k[len(text):]): v
              for k, v in state.items() if k.startswith((swin, text))}
    coarse['itm_score.fc.weight'] = torch.zeros(2, 4)
    coarse['text_transformer.encoder.layer.6.crossattention_t2i.output.LayerNorm.weight'] = torch.zeros(4)
    result = convert_fiber_state_dict(coarse, coarse=True)
    assert 'itm_score.fc.weight' in result.dropped
    assert 'text_transformer.encoder.layer.6.crossattention_t2i.output.LayerNorm.weight' in result.dropped
    assert result.state_dict['backbone.stages.2.blocks.14.i2t.gate'] is not None
    assert not any(k.startswith(('neck.', 'bbox_head.')) for k in result.state_dict)


def test_cli_converts_and_result_loads(tmp_path, repo_root, reference_root):
    tool = osp.join(repo_root, 'tools', 'model_converters', 'fiber_to_mmdet.py')
    src = osp.join(reference_root, 'tiny_v3', 'checkpoint.pth')
    dst = str(tmp_path / 'fiber_tiny_v3.pth')
    proc = subprocess.run([sys.executable, tool, src, dst], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'FIBER v3' in proc.stdout and 'i2t_query_norm=True' in proc.stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert ckpt['meta']['fiber_version'] == 'v3'
    assert any('query_norm' in k for k in ckpt['state_dict'])
    proc = subprocess.run([sys.executable, tool, src, dst, '--ema'], capture_output=True, text=True)
    assert proc.returncode == 1 and 'model_ema' in proc.stderr
