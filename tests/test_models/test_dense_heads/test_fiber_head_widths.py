"""FIBERHead's tower: deformable convolutions need the FPN and head widths to agree, said when it is built."""
import pytest
import torch

from fiber_mmdet.models.dense_heads.fiber_head import FIBERFusionModule


def test_deformable_tower_with_other_widths_is_refused_at_build():
    with pytest.raises(ValueError, match=r'in_channels \(64\) == bbox_head.feat_channels \(128\)'):
        FIBERFusionModule(in_channels=64, feat_channels=128, num_base_priors=1, lang_dim=32,
                          num_dyhead_blocks=1, use_dcn=True)


@pytest.mark.parametrize('in_channels, use_dcn', [(64, False), (32, True)])
def test_accepted_towers_run_forward(in_channels, use_dcn):
    head = FIBERFusionModule(in_channels=in_channels, feat_channels=32, num_base_priors=1, lang_dim=16,
                             num_dyhead_blocks=1, use_dcn=use_dcn).eval()
    feats = tuple(torch.randn(1, in_channels, s, s) for s in (8, 4))
    tokens = dict(embedded=torch.randn(1, 6, 16), masks=torch.ones(1, 6), hidden=torch.randn(1, 6, 16))
    with torch.no_grad():
        boxes, centerness, logits = head(feats, tokens)
    assert [b.shape for b in boxes] == [(1, 4, 8, 8), (1, 4, 4, 4)]
    assert [c.shape for c in centerness] == [(1, 1, 8, 8), (1, 1, 4, 4)]
    assert [l.shape for l in logits] == [(1, 64, 6), (1, 16, 6)]
    assert all(torch.isfinite(t).all() for t in (*boxes, *centerness, *logits))
