"""The fine-tuning configs: the original's fine-tuning values, their models and optimizer groups build, a missing
training file is named with its docs section, and the custom-data config trains and evaluates on a COCO folder."""
import copy
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config

from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from fiber_mmdet.engine.cli import amp_or_fp32
from fiber_mmdet.engine.data_files import check_data_files
from fiber_mmdet.engine.data_root import override_data_root
from fiber_mmdet.engine.finetune_protocol import build_run_config
from ..test_models.test_detectors.test_fiber_b_config import ROBERTA_BASE
from ..test_tools.conftest import write_tiny_coco

COCO = 'configs/coco/fiber_b_coco_finetune.py'
LVIS = 'configs/lvis/fiber_b_lvis_finetune.py'
REFCOCO = ['configs/refcoco/fiber_b_v3_refcoco_finetune.py', 'configs/refcoco/fiber_b_v3_refcoco_plus_finetune.py',
           'configs/refcoco/fiber_b_v3_refcocog_finetune.py']
ODINW = 'configs/odinw/fiber_b_odinw13_finetune.py'
CUSTOM = 'configs/custom/fiber_b_custom_finetune.py'


def load(repo_root, path):
    return Config.fromfile(osp.join(repo_root, path))


def flips(pipeline):
    return [t.prob for t in pipeline if t.type == 'RandomFlip_GLIP']


@pytest.mark.parametrize('path,epochs,batch,flip', [(COCO, 24, 32, 0.5), (LVIS, 24, 32, 0.5)] +
                         [(p, 20, 16, 0.0) for p in REFCOCO])
def test_downstream_recipes_follow_spec(repo_root, path, epochs, batch, flip):
    cfg = load(repo_root, path)
    opt = cfg.optim_wrapper
    assert (opt.type, opt.optimizer.type, opt.optimizer.lr, opt.optimizer.weight_decay) == (
        'NonFiniteSkipAmpOptimWrapper', 'AdamW', 1e-5, 1e-4)
    assert opt.paramwise_cfg.language_model_lr_mult == 1.0 and 'clip_grad' not in opt
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end, warmup.by_epoch) == ('LinearLR', 1e-3, 2000, False)
    assert (steps.type, tuple(steps.fractions), steps.end) == ('FractionMultiStepLR', (0.67, 0.89), epochs)
    assert cfg.train_cfg.max_epochs == epochs and cfg.auto_scale_lr.base_batch_size == batch
    assert cfg.train_dataloader.batch_size * 8 == batch
    assert [h.type for h in cfg.custom_hooks] == ['NonFiniteSkipEMAHook'] and cfg.custom_hooks[0].momentum == 0.001
    assert cfg.model.backbone.with_cp and cfg.model.backbone.frozen_stages == -1
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook' and cfg.default_hooks.checkpoint.save_best
    assert flips(cfg.train_dataloader.dataset.pipeline) == [flip]
    assert cfg.val_dataloader.dataset and cfg.val_evaluator and cfg.test_evaluator
    assert cfg.model.backbone.i2t_query_norm == ('refcoco' in path)  # v3 for referring expressions


def test_coco_lvis_and_refcoco_captions(repo_root):
    coco = load(repo_root, COCO).train_dataloader.dataset.pipeline
    assert [t for t in coco if t.type == 'ClassNamesToCaption'][0].shuffle is True
    lvis = [t for t in load(repo_root, LVIS).train_dataloader.dataset.pipeline if t.type == 'ODToGroundingCaption'][0]
    assert (lvis.num_sample_negative, tuple(lvis.control_prob), lvis.background_name) == (85, (0, 0, 1, 0), None)
    ref = load(repo_root, REFCOCO[2])
    assert ref.train_dataloader.dataset.ann_file == 'mdetr_annotations/finetune_refcocog_train_vg.json'
    assert ref.val_dataloader.dataset.ann_file == 'mdetr_annotations/finetune_refcocog_val.json'
    assert len(ref.test_dataloader.dataset.datasets) == 2


def test_odinw_recipe_follows_spec(repo_root):
    cfg = load(repo_root, ODINW)
    assert len(cfg.finetune_protocol.datasets) == 13
    opt = cfg.optim_wrapper
    assert (opt.optimizer.lr, opt.optimizer.weight_decay, opt.paramwise_cfg.language_model_lr_mult) == (1e-4, 0.05, 0.1)
    assert opt.clip_grad.max_norm == 1.0 and opt.type == 'NonFiniteSkipAmpOptimWrapper'
    assert [(s.type, s.patience, s.factor, s.rule) for s in cfg.param_scheduler] == [
        ('ReduceOnPlateauLR', 3, 0.1, 'greater')]
    assert [(h.type, h.patience, h.min_delta) for h in cfg.custom_hooks] == [('EarlyStoppingHook', 8, 0.0)]
    assert cfg.train_cfg.max_epochs == 200 and cfg.train_cfg.val_interval == 1
    assert cfg.model.backbone.frozen_stages == 1 and cfg.finetune_protocol.global_batch_size == 4


def _fiber_b(cfg, tokenizer_dir):
    model_cfg = cfg.model
    model_cfg.language_model.update(name=None, config=ROBERTA_BASE, tokenizer=tokenizer_dir)
    return MODELS.build(model_cfg)


def _groups(cfg, model):
    wrapper = cfg.optim_wrapper.to_dict()  # the recipe's AMP wrapper, which builds on the CPU too
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(type=wrapper.pop('constructor'), optim_wrapper_cfg=wrapper,
                                                        paramwise_cfg=wrapper.pop('paramwise_cfg')))
    optimizer = constructor(model).optimizer
    return {id(p): (g['lr'], g['weight_decay']) for g in optimizer.param_groups for p in g['params']}


def test_odinw_and_coco_models_and_optimizer_groups_build(repo_root, tokenizer_dir):
    """FIBER-B from the ODinW run config: stage 0 and the patch embedding are frozen and not in the optimizer;
    every other tensor has the original recipe's lr / decay by its name."""
    run = build_run_config(load(repo_root, ODINW), 'Aquarium', 1, 3, '.')
    model = _fiber_b(run, tokenizer_dir)
    groups = _groups(run, model)
    names = dict(model.named_parameters())
    frozen = [n for n, p in names.items() if not p.requires_grad]
    assert frozen and all(n.startswith(('backbone.patch_embed.', 'backbone.stages.0.')) for n in frozen)
    assert not any(id(names[n]) in groups for n in frozen)
    expect = {
        'backbone.stages.1.blocks.0.attn.w_msa.qkv.weight': (1e-4, 0.05),
        'backbone.stages.1.blocks.0.attn.w_msa.qkv.bias': (2e-4, 0.0),
        'backbone.stages.1.blocks.0.attn.w_msa.relative_position_bias_table': (2e-4, 0.0),
        'backbone.stages.1.blocks.0.norm1.weight': (1e-4, 0.05),  # norms are decayed
        'language_model.model.encoder.layer.0.attention.self.query.weight': (1e-5, 0.05),
        'language_model.model.encoder.layer.0.attention.self.query.bias': (2e-5, 0.0),
        'bbox_head.head.bias0': (2e-4, 0.0),
        'bbox_head.head.log_scale': (1e-4, 0.05),
    }
    for name, hyper in expect.items():
        assert groups[id(names[name])] == pytest.approx(hyper), name
    fused_alpha = [n for n in names if 'alpha' in n and n.startswith('language_model.')]
    assert fused_alpha and all(groups[id(names[n])] == pytest.approx((1e-5, 0.05)) for n in fused_alpha)
    assert len(groups) == len(names) - len(frozen)
    del model
    coco = load(repo_root, COCO)
    model = _fiber_b(coco, tokenizer_dir)
    assert model.backbone.with_cp and all(p.requires_grad for p in model.parameters())
    groups = _groups(coco, model)
    names = dict(model.named_parameters())
    assert groups[id(names['bbox_head.head.bias_lang'])] == pytest.approx((2e-5, 0.0))
    assert groups[id(names['language_model.model.encoder.layer.11.output.dense.weight'])] == pytest.approx(
        (1e-5, 1e-4))
    del model


def test_missing_training_files_name_their_docs_section(repo_root, tmp_path):
    for path, fragment, section in [(COCO, 'instances_train2017.json', '"Fine-tuning data", COCO'),
                                    (LVIS, 'lvis_od_train.json', '"Fine-tuning data", LVIS'),
                                    (REFCOCO[0], 'finetune_refcoco_train_vg.json', '"Fine-tuning data", RefCOCO'),
                                    (CUSTOM, 'data/custom/annotations/train.json', '"Fine-tune on your own data"')]:
        cfg = load(repo_root, path)
        with pytest.raises(FileNotFoundError) as error:
            check_data_files(cfg, ['train', 'val'])
        lines = str(error.value).splitlines()
        line = next(l for l in lines if fragment in l)
        assert section in line, line
        assert any('load_from' in l and 'Converting an official checkpoint' in l for l in lines), path


def test_custom_config_trains_and_evaluates_on_a_coco_folder(repo_root, tiny_model_cfg, tmp_path):
    """A COCO json + an image folder, data_root re-pointed as --cfg-options data_root=... does; the small
    model stands in for FIBER-B (same recipe, pipelines, datasets, evaluator)."""
    from mmengine.runner import Runner
    root = tmp_path / 'my_data'
    write_tiny_coco(root, num_images=4)
    (root / 'annotations').mkdir()
    for split in ('train', 'val'):
        shutil.copy(root / 'annotations.json', root / 'annotations' / f'{split}.json')
    cfg = load(repo_root, CUSTOM)
    assert override_data_root(cfg, 'data_root', str(root)) >= 5  # data_root, three datasets, two evaluators
    assert cfg.val_evaluator.ann_file == f'{root}/annotations/val.json'
    cfg.model = copy.deepcopy(tiny_model_cfg)
    cfg.model.backbone.frozen_stages = 1
    cfg.model.test_cfg.score_thr = 0.0  # an untrained model: keep its (low-score) boxes so that AP is computed
    cfg.load_from = None
    assert cfg.optim_wrapper.type == 'NonFiniteSkipAmpOptimWrapper'
    # what tools/train.py does: float16 autocast is slow on CPUs, so without CUDA the run trains in fp32
    assert amp_or_fp32(cfg) == (not torch.cuda.is_available())
    assert cfg.optim_wrapper.type == ('NonFiniteSkipAmpOptimWrapper' if torch.cuda.is_available()
                                      else 'NonFiniteSkipOptimWrapper')
    cfg.train_cfg.max_epochs = 1
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
        for t in loader.dataset.pipeline:
            if t.type == 'ShortSideResize':
                t.short_sides, t.max_long_side = (96, ), 160
    cfg.train_dataloader.batch_size = 2
    cfg.work_dir = str(tmp_path / 'work')
    check_data_files(cfg, ['train', 'val', 'test'])
    runner = Runner.from_cfg(cfg)
    assert runner.train_dataloader.dataset.metainfo['classes'] == ('square', 'disc')  # from the json
    runner.train()
    assert runner.iter == 2
    metrics = runner.test()
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0 and 'coco/bbox_AR@100' in metrics
    assert [f for f in os.listdir(cfg.work_dir) if f.startswith('best_coco_bbox_mAP')]


def test_repoint_without_data_root_is_an_error(repo_root):
    with pytest.raises(ValueError, match='no top-level data_root'):
        override_data_root(Config(dict(a=1)), 'data_root', '/x')
