"""GeluLinearFFN: mmcv's FFN values and gradients, without its GELU output stored for backward."""
import copy

import torch
from mmcv.cnn.bricks.transformer import FFN

from fiber_mmdet.models.layers import GeluLinear, GeluLinearFFN

KW = dict(embed_dims=12, feedforward_channels=48, num_fcs=2, act_cfg=dict(type='GELU'), add_identity=True)


def test_gradcheck():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 5, 7, dtype=torch.double, generator=g, requires_grad=True)
    w = torch.randn(4, 7, dtype=torch.double, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.double, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(GeluLinear.apply, (h, w, b))


def test_equals_mmcv_ffn_and_stores_no_hidden_gelu_output():
    torch.manual_seed(0)
    ref = FFN(**KW)
    ours = GeluLinearFFN(**KW)
    ours.load_state_dict(ref.state_dict())
    assert ours.recompute and list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 30, 12, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = ours(x)
    assert saved.count((2, 30, 48)) == 1  # fc1's output only (mmcv's FFN keeps it and the GELU output)
    expected = ref(x_ref)
    assert (out - expected).abs().max().item() < 1e-6
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert (x.grad - x_ref.grad).abs().max().item() < 1e-6
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert (p.grad - q.grad).abs().max().item() < 1e-5, name


def test_other_activations_and_dropout_use_mmcv_path():
    assert not GeluLinearFFN(**dict(KW, act_cfg=dict(type='ReLU'))).recompute
    assert not GeluLinearFFN(**dict(KW, ffn_drop=0.1)).recompute
    relu = GeluLinearFFN(**dict(KW, act_cfg=dict(type='ReLU')))
    ref = copy.deepcopy(relu)
    x = torch.randn(1, 4, 12)
    assert torch.equal(relu(x), FFN.forward(ref, x))
