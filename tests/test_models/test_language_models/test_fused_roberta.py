import pytest
import torch

from fiber_mmdet.models import FusedRoberta

TINY = dict(vocab_size=400, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=300, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            hidden_act='gelu', layer_norm_eps=1e-5, hidden_dropout_prob=0., attention_probs_dropout_prob=0.)


@pytest.fixture(scope='module')
def hf_roberta_dir(tmp_path_factory, tokenizer_dir):
    """A randomly initialised transformers RobertaModel saved like a hub model, with our test tokenizer."""
    import shutil
    from transformers import RobertaConfig, RobertaModel
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp('roberta')
    model = RobertaModel(RobertaConfig(**TINY), add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for name, p in model.named_parameters():
            if name.endswith('bias') or 'LayerNorm' in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out)
    for f in ('vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'):
        try:
            shutil.copy(f'{tokenizer_dir}/{f}', out / f)
        except FileNotFoundError:
            pass
    return str(out)


def test_loads_hf_weights_and_matches_transformers(hf_roberta_dir):
    """With the image absent, our layers compute exactly transformers' RoBERTa."""
    from transformers import RobertaModel
    ours = FusedRoberta(name=hf_roberta_dir, max_tokens=32, fused_layers=(2, 3), image_dims=(16, 24)).eval()
    ref = RobertaModel.from_pretrained(hf_roberta_dir, add_pooling_layer=False).eval()
    captions = ['a blue circle left of a green square', 'person. car']
    tok = ours.tokenize(captions)
    assert tok['input_ids'].shape == (2, 32) and tok['input_ids'][0, 0].item() == 0
    with torch.no_grad():
        got = ours(captions)
        want = ref(input_ids=tok['input_ids'], attention_mask=tok['attention_mask']).last_hidden_state
    assert (got['hidden'] - want).abs().max().item() < 1e-5
    assert torch.equal(got['masks'], tok['attention_mask'])
    assert torch.all(got['embedded'][1, tok['attention_mask'][1] == 0] == 0)


def test_fused_layer_gate_and_image_dependence():
    torch.manual_seed(0)
    m = FusedRoberta(name=None, config=TINY, max_tokens=16, fused_layers=(2, 3), image_dims=(16, 24)).eval()
    ids = torch.randint(3, 400, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 10:] = 0
    ids[1, 10:] = 1
    image = torch.randn(2, 50, 16)
    with torch.no_grad():
        h = m.forward_text_only(ids, mask)
        closed = m.forward_fused_layer(0, h, mask, image)  # gate alpha_t2i starts at 0
        plain = m.model.encoder.layer[2](h, m._valid(mask))
        assert torch.equal(closed, plain)
        m.model.encoder.layer[2].alpha_t2i.fill_(0.7)
        opened = m.forward_fused_layer(0, h, mask, image)
        other = m.forward_fused_layer(0, h, mask, image.flip(0))
    assert not torch.allclose(opened, plain)
    assert not torch.allclose(opened, other)


def test_caption_that_does_not_fit(tokenizer_dir):
    m = FusedRoberta(name=None, config=TINY, tokenizer=tokenizer_dir, max_tokens=8, fused_layers=(2, 3),
                     image_dims=(16, 24))
    with pytest.raises(ValueError, match='do not fit in 8 tokens'):
        m.tokenize(['a man riding a horse next to a black dog on the beach'])
    tok = m.tokenize(['a man riding a horse next to a black dog on the beach'], allow_truncation=True)
    assert tok['input_ids'].shape == (1, 8)


@pytest.mark.parametrize('layers, dims, message', [
    ((2, 4), (16, 24), 'consecutive'),
    ((3, 4), (16, 24), 'within 0..3'),
    ((2, 3), (16,), 'differ in length'),
])
def test_bad_fusion_layers(layers, dims, message):
    with pytest.raises(ValueError, match=message):
        FusedRoberta(name=None, config=TINY, fused_layers=layers, image_dims=dims)
