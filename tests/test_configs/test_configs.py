"""Every config loads, names only registered components, and the toy recipe really trains."""
import copy
import glob
import itertools
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmdet.registry import DATASETS, HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, TRANSFORMS


def _config_files(repo_root):
    return sorted(glob.glob(osp.join(repo_root, 'configs', '**', '*.py'), recursive=True))


def _types(obj):
    if isinstance(obj, dict):
        if isinstance(obj.get('type'), str):
            yield obj['type']
        for v in obj.values():
            yield from _types(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _types(v)


def test_all_configs_load_and_use_registered_types(repo_root):
    from mmengine.registry import EVALUATOR, METRICS, PARAM_SCHEDULERS, LOOPS, DATA_SAMPLERS, OPTIM_WRAPPERS
    from mmdet.registry import METRICS as DET_METRICS, EVALUATOR as DET_EVALUATOR, TASK_UTILS, VISUALIZERS
    from mmdet.registry import DATA_SAMPLERS as DET_SAMPLERS, LOOPS as DET_LOOPS, OPTIM_WRAPPERS as DET_WRAPPERS
    from mmdet.registry import PARAM_SCHEDULERS as DET_SCHEDULERS
    from mmengine.registry import VISBACKENDS, OPTIMIZERS, LOG_PROCESSORS, WEIGHT_INITIALIZERS
    registries = [MODELS, DATASETS, TRANSFORMS, HOOKS, OPTIM_WRAPPER_CONSTRUCTORS, EVALUATOR, METRICS,
                  PARAM_SCHEDULERS, LOOPS, DATA_SAMPLERS, OPTIM_WRAPPERS, DET_METRICS, DET_EVALUATOR, TASK_UTILS,
                  VISUALIZERS, VISBACKENDS, OPTIMIZERS, LOG_PROCESSORS, DET_SAMPLERS, DET_LOOPS, DET_WRAPPERS,
                  DET_SCHEDULERS, WEIGHT_INITIALIZERS]
    files = _config_files(repo_root)
    assert len(files) >= 5
    for path in files:
        cfg = Config.fromfile(path)
        # 'nms' names an mmcv operator for batched_nms, not a registry entry
        unknown = [t for t in set(_types(cfg.to_dict())) - {'nms'} if not any(r.get(t) for r in registries)]
        assert not unknown, f'{path}: unregistered types {unknown}'
        # mmengine's LoggerHook makes every rank write the test JSON to one path (corrupt under dist_test.sh)
        if 'default_hooks' in cfg:  # runnable configs, not the model / dataset-table bases
            assert cfg.default_hooks.logger.type == 'RankZeroLoggerHook', path
            # non-finite steps are skipped, counted and stop a run of them, so no checkpoint holds NaN weights
            assert cfg.default_hooks.non_finite.type == 'NonFiniteGuardHook', path
            if cfg.get('optim_wrapper'):
                assert cfg.optim_wrapper.type.startswith('NonFiniteSkip'), path
            # mmdet's DetInferencer / inference_detector replace the test loader found by this exact name
            if cfg.get('test_dataloader'):
                pipeline = (cfg.test_dataloader.get('dataset') or {}).get('pipeline', None)
                if pipeline:
                    assert pipeline[0].type == 'LoadImageFromFile', path
            # a bad image or prompt stops a benchmark run with the sample named (strict by default)
            for loop in ('val_cfg', 'test_cfg'):
                if cfg.get(loop):
                    assert cfg[loop].type.startswith('ContainBadSamples'), (path, loop)
                    assert cfg[loop].on_bad_sample == 'raise', (path, loop)


@pytest.mark.parametrize('name,batch,iters', [('fiber_toy.py', 4, 1200), ('fiber_toy_2400x2.py', 2, 2400),
                                              ('fiber_toy_attribute_first_1200.py', 4, 1200),
                                              ('fiber_toy_attribute_first_3600.py', 4, 3600)])
def test_toy_schedules_follow_their_length(repo_root, name, batch, iters):
    """LR and weight-decay steps of each toy schedule sit at 67 % / 89 % of its own length."""
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'toy', name))
    steps = [int(0.67 * iters), int(0.89 * iters)]
    assert (cfg.train_dataloader.batch_size, cfg.train_cfg.max_iters) == (batch, iters)
    assert cfg.param_scheduler[1].end == iters and cfg.param_scheduler[1].milestones == steps
    assert cfg.custom_hooks[0].milestones == steps
    assert cfg.train_cfg.val_interval == cfg.default_hooks.checkpoint.interval == iters


def test_quickstart_schedule_drops_late(repo_root):
    """fiber_toy_attribute_first.py (make quickstart): 1900 iterations, learning rate and weight decay dropping
    together at 1660 and 1830, one checkpoint at the end."""
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'toy', 'fiber_toy_attribute_first.py'))
    assert (cfg.train_dataloader.batch_size, cfg.train_cfg.max_iters) == (4, 1900)
    assert cfg.param_scheduler[1].end == 1900 and cfg.param_scheduler[1].milestones == [1660, 1830]
    assert cfg.custom_hooks[0].milestones == [1660, 1830]
    assert cfg.train_cfg.val_interval == cfg.default_hooks.checkpoint.interval == 1900


def test_pretrain_recipe_values(repo_root):
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'fiber_fine_pretrain.py'))
    assert cfg.train_cfg.max_iters == 800_000
    assert cfg.param_scheduler[0].end == 2000 and cfg.param_scheduler[0].start_factor == 1e-3
    assert cfg.param_scheduler[1].milestones == [536_000, 712_000]
    assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.optim_wrapper.optimizer.weight_decay == 0.01
    assert cfg.optim_wrapper.paramwise_cfg.language_model_lr_mult == 0.1  # 1e-5 for the language model
    assert cfg.optim_wrapper.clip_grad.max_norm == 1.0 and cfg.optim_wrapper.type == 'NonFiniteSkipAmpOptimWrapper'
    assert cfg.model.backbone.frozen_stages == 1
    assert cfg.default_hooks.checkpoint.interval == 2500
    assert {h.type for h in cfg.custom_hooks} == {'NonFiniteSkipEMAHook', 'WeightDecayScheduleHook'}
    assert cfg.auto_scale_lr.base_batch_size == 64


@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    from fiber_mmdet.datasets.synthetic_shapes import generate_toy_dataset
    out = str(tmp_path_factory.mktemp('toy_shapes'))
    generate_toy_dataset(out, seed=1, num_train_od=8, num_train_od_attr=4, num_train_vg=8, num_val=4, num_grounding=4)
    return out


def _toy_config_on(repo_root, name, toy_data):
    """configs/toy/NAME with its model tokenizer and training datasets moved to ``toy_data``."""
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'toy', name))
    root = toy_data + '/'
    cfg.model.language_model.tokenizer = root + 'tokenizer'
    for ds in cfg.train_dataloader.dataset.datasets:
        ds.data_root = root
        for t in ds.pipeline:
            if t.type == 'ODToGroundingCaption':
                t.tokenizer_name = root + 'tokenizer'
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    return cfg


def test_toy_recipe_learns_a_batch(repo_root, toy_data, tmp_path):
    """The toy recipe (pipeline, caption transform, FIBER losses, FIBER's optimizer groups) lowers the loss of
    a fixed batch over a few steps."""
    from mmengine.runner import Runner
    cfg = _toy_config_on(repo_root, 'fiber_toy.py', toy_data)
    cfg.train_dataloader.update(batch_size=2)
    cfg.work_dir = str(tmp_path)
    torch.manual_seed(0)
    runner = Runner.from_cfg(cfg)
    batch = next(iter(runner.train_dataloader))
    model = runner.model
    optim = runner.build_optim_wrapper(cfg.optim_wrapper)
    base_lr = cfg.optim_wrapper.optimizer.lr
    groups = {(g['lr'], g['weight_decay']) for g in optim.optimizer.param_groups}
    assert (base_lr, 0.01) in groups and (2 * base_lr, 0.0) in groups  # FIBER's bias rule
    model.train()
    losses = []
    for _ in range(8):
        data = model.data_preprocessor(copy.deepcopy(batch), True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        optim.update_params(loss)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0], losses


def test_attribute_first_curriculum_draws_train_od_attr_first(repo_root, toy_data):
    """fiber_toy_attribute_first.py: its first 200 iterations of 4 images come from train_od_attr only, the rest
    from all three datasets; the token loss weighs 4x."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope('mmdet')
    cfg = _toy_config_on(repo_root, 'fiber_toy_attribute_first.py', toy_data)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    concat = loader.dataset
    assert [osp.basename(d.ann_file) for d in concat.datasets] == ['train_od.jsonl', 'train_od_attr.jsonl',
                                                                    'train_vg.jsonl']
    stream = list(itertools.islice(iter(loader.sampler), 200 * 4 + 200))
    first = {concat._get_ori_dataset_idx(i)[0] for i in stream[:800]}
    rest = {concat._get_ori_dataset_idx(i)[0] for i in stream[800:]}
    assert first == {1} and rest == {0, 1, 2}
    assert cfg.model.bbox_head.loss_cls.loss_weight == 4.0
    assert Config.fromfile(osp.join(repo_root, 'configs', 'toy', 'fiber_toy.py')).model.bbox_head.loss_cls.loss_weight == 1.0


def test_toy_head_block_is_plain_because_its_input_is_narrower(repo_root, toy_data):
    """The README's head-capacity finding rests on mmdet's DyConv rule (GLIP's and FIBER's too): a first block
    whose input width differs from its own has no DyReLU and no scale attention. The toy (64-channel FPN, one
    128-channel block) gets such a plain block; a 128-channel FPN gives a full DyHead block."""
    from mmdet.models.dense_heads.atss_vlfusion_head import DyReLU
    cfg = _toy_config_on(repo_root, 'fiber_toy_attribute_first.py', toy_data)
    block = MODELS.build(cfg.model).bbox_head.head.dyhead_tower[0]
    assert type(block.relu) is torch.nn.ReLU and block.attnconv is None
    cfg.model.neck.out_channels = cfg.model.bbox_head.in_channels = 128
    block = MODELS.build(cfg.model).bbox_head.head.dyhead_tower[0]
    assert isinstance(block.relu, DyReLU) and block.attnconv is not None
