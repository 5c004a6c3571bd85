"""Starting FIBER from public unimodal weights: Swin files in the official, timm and mmpretrain layouts and a
transformers RoBERTa folder, loaded into the small FIBER of ``configs/_base_/models/fiber_tiny.py`` through the
config keys the ``*_from_unimodal`` configs set (``backbone.init_cfg``, ``language_model.name``).

The ground truth is a randomly initialised mmpretrain ``SwinTransformer`` of the tiny FIBER's size: its classifier
checkpoint is the mmpretrain file; the official and timm files are written from it here with the renames and the
patch-merging channel order of those releases. Each file must load every Swin weight (equal to the ground truth,
and the backbone computes what mmpretrain's Swin computes), drop exactly the classifier and recomputed buffers, and
leave exactly the fusion layers (and the FPN and head) newly initialised.
"""
import copy
import os.path as osp
import re

import pytest
import torch

from fiber_mmdet.utils.unimodal_init import load_roberta_pretrained, load_swin_pretrained

ARCH = dict(embed_dims=32, depths=[2, 2, 4, 2], num_heads=[1, 2, 4, 8])  # configs/_base_/models/fiber_tiny.py
FUSED_BLOCKS = [(2, 2), (2, 3), (3, 0), (3, 1)]
FUSED_TEXT_LAYERS = [2, 3, 4, 5]
BLOCKS = [(i, j) for i, d in enumerate(ARCH['depths']) for j in range(d)]
# what the fusion adds, and the output norms a classifier does not have (it keeps norm3 only)
SWIN_NEW = sorted([f'stages.{s}.blocks.{b}.i2t.{p}' for s, b in FUSED_BLOCKS
                   for p in ('query.weight', 'query.bias', 'text_kv.weight', 'text_kv.bias', 'out_proj.weight',
                             'out_proj.bias', 'gate')] + ['norm1.weight', 'norm1.bias', 'norm2.weight', 'norm2.bias'])
TEXT_NEW = sorted(f'encoder.layer.{l}.{p}' for l in FUSED_TEXT_LAYERS
                  for p in ['alpha_t2i'] + [f'crossattention_t2i.{m}.{w}' for m in ('self.query', 'self.key',
                                                                                  'self.value', 'output.dense')
                                            for w in ('weight', 'bias')])
ROBERTA = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=128,
               max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
               layer_norm_eps=1e-5)
# the 2x2 neighbours in the official / timm concatenation order, (row, col), and their nn.Unfold position
CONCAT_TO_UNFOLD = [2 * row + col for row, col in ((0, 0), (1, 0), (0, 1), (1, 1))]


@pytest.fixture(scope='module')
def swin_truth():
    """(mmpretrain SwinTransformer, its state dict, a LinearClsHead state dict), random weights, eval mode."""
    from mmpretrain.models.backbones import SwinTransformer
    torch.manual_seed(0)
    swin = SwinTransformer(arch=ARCH, img_size=224, window_size=7, out_indices=(3, ), pad_small_map=True)
    swin.eval()  # (mmpretrain's train() returns None)
    with torch.no_grad():  # every weight away from any initial value (LayerNorms 1 / 0, bias tables 0)
        for p in swin.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    head = {'fc.weight': torch.randn(10, 256), 'fc.bias': torch.randn(10)}  # LinearClsHead(10 classes)
    return swin, swin.state_dict(), head


def _to_concat_order(t: torch.Tensor) -> torch.Tensor:
    """nn.Unfold channel order (c * 4 + position) -> the official concatenation (group * C + c)."""
    *lead, four_c = t.shape
    return t.reshape(*lead, four_c // 4, 4)[..., CONCAT_TO_UNFOLD].transpose(-1, -2).reshape(*lead, four_c)


def _official_name(key: str) -> str:
    key = key.replace('patch_embed.projection.', 'patch_embed.proj.').replace('attn.w_msa.', 'attn.')
    key = key.replace('ffn.layers.0.0.', 'mlp.fc1.').replace('ffn.layers.1.', 'mlp.fc2.')
    return re.sub(r'^norm3\.', 'norm.', key.replace('stages.', 'layers.'))


def write_swin_file(layout: str, truth, folder) -> str:
    """The ground truth as a classifier checkpoint of ``layout``; returns the path."""
    _, state, head = truth
    if layout == 'mmpretrain':  # ImageClassifier: backbone + LinearClsHead, in MMEngine's checkpoint dict
        out = {f'backbone.{k}': v for k, v in state.items()}
        out.update({f'head.{k}': v for k, v in head.items()})
        path = folder / 'swin_mmpretrain.pth'
        torch.save({'meta': {'dataset_meta': {}}, 'state_dict': out}, path)
        return str(path)
    out = {}
    for key, value in state.items():
        if key.endswith('relative_position_index') and layout == 'timm':
            continue  # timm keeps its buffers out of the state dict
        name = _official_name(key)
        if '.downsample.' in name:
            value = _to_concat_order(value)
            if layout == 'timm':  # timm merges at the start of the next stage
                name = re.sub(r'layers\.(\d+)\.', lambda m: f'layers.{int(m.group(1)) + 1}.', name)
        out[name] = value.clone()
    if layout == 'official':
        for i, j in BLOCKS:
            if j % 2:  # shifted blocks keep their attention mask
                out[f'layers.{i}.blocks.{j}.attn_mask'] = torch.zeros(4, 49, 49)
        out.update({f'head.{k[3:]}': v for k, v in head.items()})
        path = folder / 'swin_official.pth'
        torch.save({'model': out}, path)
        return str(path)
    from safetensors.torch import save_file
    out.update({f'head.{k}': v for k, v in head.items()})  # timm's ClassifierHead: head.fc
    path = folder / 'swin_timm.safetensors'
    save_file({k: v.contiguous() for k, v in out.items()}, str(path))
    return str(path)


def expected_dropped(layout: str) -> list:
    if layout == 'official':
        return sorted(['head.weight', 'head.bias'] + [f'layers.{i}.blocks.{j}.attn.relative_position_index'
                                                      for i, j in BLOCKS]
                      + [f'layers.{i}.blocks.{j}.attn_mask' for i, j in BLOCKS if j % 2])
    if layout == 'timm':
        return ['head.fc.bias', 'head.fc.weight']
    return sorted(['head.fc.weight', 'head.fc.bias'] + [f'backbone.stages.{i}.blocks.{j}.attn.w_msa.'
                                                        'relative_position_index' for i, j in BLOCKS])


@pytest.fixture(scope='module')
def roberta_dirs(tmp_path_factory, tokenizer_dir):
    """transformers RoBERTa folders written by ``save_pretrained``: the base model with its pooler, and the
    masked-LM model (roberta-base's own layout: ``roberta.`` prefix and ``lm_head``), with the test tokenizer."""
    import shutil
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaModel
    out = {}
    for kind, cls in (('base', RobertaModel), ('masked_lm', RobertaForMaskedLM)):
        torch.manual_seed(1)
        model = cls(RobertaConfig(**ROBERTA)).eval()
        with torch.no_grad():  # LayerNorms and biases away from their 1 / 0 init
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        folder = tmp_path_factory.mktemp(f'roberta_{kind}')
        model.save_pretrained(folder)
        for f in ('vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'):
            if osp.isfile(osp.join(tokenizer_dir, f)):
                shutil.copy(osp.join(tokenizer_dir, f), folder / f)
        base = model if kind == 'base' else model.roberta
        out[kind] = (str(folder), {k: v.clone() for k, v in base.state_dict().items()})
    return out


def _tiny_backbone(**kwargs):
    from fiber_mmdet.models import FusionSwinTransformer
    return FusionSwinTransformer(arch=ARCH, text_dims=64, fusion_blocks=FUSED_BLOCKS, window_size=7, **kwargs)


@pytest.mark.parametrize('layout', ['official', 'timm', 'mmpretrain'])
def test_swin_layout_loads_every_weight(layout, swin_truth, tmp_path):
    """Each layout: the report names the dropped keys and the new (fusion) weights; the loaded ones equal the
    ground truth and the backbone reproduces mmpretrain's Swin (fusion gates at 0, no text)."""
    path = write_swin_file(layout, swin_truth, tmp_path)
    backbone = _tiny_backbone(drop_path_rate=0.)
    report = load_swin_pretrained(backbone.eval(), path)
    swin, truth, _ = swin_truth
    want = {k: v for k, v in truth.items() if not k.endswith('relative_position_index')}
    assert report.layout == layout
    assert sorted(report.dropped) == expected_dropped(layout)
    assert sorted(report.new) == SWIN_NEW
    assert sorted(report.loaded) == sorted(want)
    state = backbone.state_dict()
    assert all(torch.equal(state[k], v) for k, v in want.items())
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ours, ref = backbone(x)[-1], swin(x)[-1]
    assert (ours - ref).abs().max().item() < 1e-4


def test_swin_file_errors_name_the_key(swin_truth, tmp_path):
    """A Swin weight missing from the file, a key with no counterpart, or another window size is an error that
    names the key, not a silently random weight."""
    path = write_swin_file('official', swin_truth, tmp_path)
    ckpt = torch.load(path, weights_only=True)
    lacking = dict(ckpt['model'])
    lacking.pop('layers.2.blocks.1.mlp.fc1.weight')
    torch.save({'model': lacking}, tmp_path / 'lacking.pth')
    with pytest.raises(ValueError, match=r'lacks 1 Swin weight.*stages\.2\.blocks\.1\.ffn\.layers\.0\.0\.weight'):
        load_swin_pretrained(_tiny_backbone(), str(tmp_path / 'lacking.pth'))
    extra = dict(ckpt['model'], **{'layers.0.blocks.0.attn.rel_h': torch.zeros(3)})
    torch.save({'model': extra}, tmp_path / 'extra.pth')
    with pytest.raises(ValueError, match=r'layers\.0\.blocks\.0\.attn\.rel_h'):
        load_swin_pretrained(_tiny_backbone(), str(tmp_path / 'extra.pth'))
    from fiber_mmdet.models import FusionSwinTransformer
    wide_window = FusionSwinTransformer(arch=ARCH, text_dims=64, fusion_blocks=FUSED_BLOCKS, window_size=12)
    with pytest.raises(ValueError, match=r'relative_position_bias_table: file \(169, 1\) vs model \(529, 1\)'):
        load_swin_pretrained(wide_window, path)


@pytest.mark.parametrize('kind', ['base', 'masked_lm'])
def test_roberta_folder_loads_every_weight(kind, roberta_dirs, tokenizer_dir):
    """Every RoBERTa weight loads (equal to the file), the pooler / masked-LM head are dropped by name, only the
    text->image cross-attention stays new."""
    from fiber_mmdet.models import FusedRoberta
    folder, truth = roberta_dirs[kind]
    text = FusedRoberta(name=None, config=ROBERTA, tokenizer=tokenizer_dir, fused_layers=FUSED_TEXT_LAYERS,
                        image_dims=(128, 128, 256, 256))
    report = load_roberta_pretrained(text.model, folder)
    if kind == 'base':
        assert sorted(report.dropped) == ['pooler.dense.bias', 'pooler.dense.weight']
    else:
        assert sorted(report.dropped) == ['lm_head.bias', 'lm_head.dense.bias', 'lm_head.dense.weight',
                                          'lm_head.layer_norm.bias', 'lm_head.layer_norm.weight']
    assert sorted(report.new) == TEXT_NEW
    truth = {k: v for k, v in truth.items() if not k.startswith('pooler.') and not k.endswith('position_ids')}
    assert sorted(report.loaded) == sorted(truth)
    state = text.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in truth.items())


def test_roberta_folder_lacking_a_weight_is_an_error(roberta_dirs, tokenizer_dir, tmp_path):
    from safetensors.torch import load_file, save_file
    from fiber_mmdet.models import FusedRoberta
    folder, _ = roberta_dirs['base']
    state = load_file(f'{folder}/model.safetensors')
    state.pop('encoder.layer.3.output.dense.weight')
    save_file(state, str(tmp_path / 'model.safetensors'))
    text = FusedRoberta(name=None, config=ROBERTA, tokenizer=tokenizer_dir, fused_layers=FUSED_TEXT_LAYERS,
                        image_dims=(128, 128, 256, 256))
    with pytest.raises(ValueError, match=r'lacks 1 RoBERTa weight.*encoder\.layer\.3\.output\.dense\.weight'):
        load_roberta_pretrained(text.model, str(tmp_path))


@pytest.mark.parametrize('layout,kind', [('official', 'masked_lm'), ('timm', 'base'), ('mmpretrain', 'masked_lm')])
def test_detector_from_unimodal_config_keys(layout, kind, swin_truth, roberta_dirs, tiny_model_cfg, tmp_path):
    """The FIBER detector built with the config keys of the ``*_from_unimodal`` configs: after ``init_weights``
    the image and text weights are the files', and exactly the fusion layers, the FPN and the head are not."""
    from mmdet.registry import MODELS
    folder, text_truth = roberta_dirs[kind]
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=write_swin_file(layout, swin_truth, tmp_path))
    cfg.language_model.update(name=folder, load_pretrained=True)
    model = MODELS.build(cfg)
    model.init_weights()
    state = model.state_dict()
    loaded = {f'backbone.{k}': v for k, v in swin_truth[1].items() if not k.endswith('relative_position_index')}
    loaded.update({f'language_model.model.{k}': v for k, v in text_truth.items()
                   if not k.startswith('pooler.') and not k.endswith('position_ids')})
    assert all(torch.equal(state[k], v) for k, v in loaded.items())
    new = sorted(k for k in state if k not in loaded and not k.endswith('relative_position_index'))
    fusion = [k for k in new if not k.startswith(('neck.', 'bbox_head.'))]
    assert fusion == sorted([f'backbone.{k}' for k in SWIN_NEW] + [f'language_model.model.{k}' for k in TEXT_NEW])
    assert {k.split('.')[0] for k in new} == {'backbone', 'language_model', 'neck', 'bbox_head'}
    assert all(k in new for k in state if k.startswith(('neck.', 'bbox_head.')))


@pytest.mark.parametrize('safe', [True, False])
def test_sharded_roberta_folders_are_read_whole(tmp_path, safe):
    """A RoBERTa folder saved in shards (safetensors or .bin, with its index) gives every tensor of the model; a
    folder without weights is an error that names it."""
    from transformers import RobertaConfig, RobertaModel
    from fiber_mmdet.utils.roberta_checkpoint import read_weight_files
    model = RobertaModel(RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=40))
    model.save_pretrained(tmp_path / 'shards', safe_serialization=safe, max_shard_size='20KB')
    state, files = read_weight_files(str(tmp_path / 'shards'))
    assert len(files) > 1
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no RoBERTa weights in .*empty'):
        read_weight_files(str(tmp_path / 'empty'))
