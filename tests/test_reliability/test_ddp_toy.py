"""DDP training and evaluation of the toy model on two CPU ranks, as a user runs it (``tools/dist_train.sh``:
torchrun, ``--launcher pytorch``, gloo), on a validation set of odd size, so that MMEngine's sampler pads the last
round with a repeat of the first sample on the second rank. That first sample is an unreadable image
(``on_bad_sample='skip'``): it is skipped on both ranks and must be counted once.

Checked: the run finishes within its time limit; DDP left the two ranks with identical parameters, those of the
checkpoint; the validation metrics of the distributed run equal those of the same checkpoint evaluated in one
process the way ``tools/test.py`` does (its config loading and runner set-up, in the test's process), the
bad-sample count included. Training starts from a toy model whose head scores every anchor about 0.5, so that
the metrics are computed on real detections."""
import argparse
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmdet.registry import MODELS

from fiber_mmdet.engine.cli import add_runner_args, build_runner, load_runner_config
from ..test_tools.conftest import free_port, read_scalars, run_tool
from .conftest import REPO_ROOT, TOOLS, TOY_CONFIG, toy_options

ITERS = 2
HOOK = '''
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class SaveRankParametersHook(Hook):
    """Saves this rank's parameters when training ends."""

    def after_train(self, runner):
        params = {k: v.detach().clone() for k, v in runner.model.named_parameters()}
        torch.save(params, f'{runner.work_dir}/rank{get_rank()}_parameters.pth')
'''
CONFIG = '''
_base_ = {toy!r}
custom_imports = dict(imports=['fiber_mmdet', 'rank_parameters_hook'], allow_failed_imports=False)
custom_hooks = _base_.custom_hooks + [dict(type='SaveRankParametersHook')]
'''


@pytest.fixture(scope='module')
def ddp_toy(tmp_path_factory):
    """Tiny toy data (first validation image unreadable), the config with the parameter-saving hook, a starting
    checkpoint, and the options shared by the runs."""
    from fiber_mmdet.datasets.synthetic_shapes import generate_toy_dataset
    root = tmp_path_factory.mktemp('ddp_toy')
    data = str(root / 'toy_shapes')
    generate_toy_dataset(data, seed=2, num_train_od=4, num_train_od_attr=2, num_train_vg=4, num_val=3,
                         num_grounding=2, tokenizer_vocab_size=300)
    sizes = {}
    for name in ('val_coco', 'grounding_val', 'grounding_unique_colour_val'):
        with open(osp.join(data, 'annotations', f'{name}.json')) as f:
            content = json.load(f)
        sizes[name] = len(content['images'])
        if name == 'val_coco':
            first = osp.join(data, 'images', 'val', content['images'][0]['file_name'])
    assert sum(sizes.values()) % 2 == 1, sizes  # two ranks do not divide the validation set
    with open(first, 'r+b') as f:  # the validation set's first sample: cut to 100 bytes
        f.truncate(100)
    (root / 'rank_parameters_hook.py').write_text(HOOK)
    config = root / 'toy_ddp.py'
    config.write_text(CONFIG.format(toy=TOY_CONFIG))

    cfg = Config.fromfile(TOY_CONFIG)
    cfg.model.language_model.tokenizer = osp.join(data, 'tokenizer')
    torch.manual_seed(0)
    state_dict = MODELS.build(cfg.model).state_dict()
    state_dict['bbox_head.head.bias0'] = torch.zeros_like(state_dict['bbox_head.head.bias0'])
    start = str(root / 'start.pth')
    torch.save(dict(state_dict=state_dict), start)

    options = toy_options(data, **{
        'train_cfg.max_iters': ITERS, 'train_cfg.val_interval': ITERS, 'default_hooks.checkpoint.interval': ITERS,
        'val_cfg.on_bad_sample': 'skip', 'test_cfg.on_bad_sample': 'skip', 'load_from': start,
        'model.test_cfg.score_thr': 0.0})  # a 2-iteration model: keep its low-scored boxes
    return root, str(config), options


def _evaluate_in_one_process(config, checkpoint, work_dir, options):
    """tools/test.py's steps: the parser's options, load_runner_config, load_from, build_runner, test."""
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--work-dir')
    add_runner_args(parser)
    cfg = load_runner_config(parser.parse_args([config, '--work-dir', work_dir] + options))
    cfg.load_from = checkpoint
    return build_runner(cfg).test()


def test_ddp_training_and_uneven_validation_match_one_process(ddp_toy, monkeypatch):
    root, config, options = ddp_toy
    work_dir = str(root / 'ddp')
    env = dict(PYTHONPATH=os.pathsep.join([str(root), str(REPO_ROOT)]), PORT=str(free_port()))
    log = run_tool([str(TOOLS / 'dist_train.sh'), config, '2', '--work-dir', work_dir] + options, cwd=str(root),
                   timeout=300, extra_env=env)
    assert "backend 'gloo', rank 0/2" in log

    ranks = [torch.load(osp.join(work_dir, f'rank{r}_parameters.pth')) for r in range(2)]
    assert len(ranks[0]) > 100 and ranks[0].keys() == ranks[1].keys()
    unequal = [k for k in ranks[0] if not torch.equal(ranks[0][k], ranks[1][k])]
    assert not unequal, unequal[:5]
    checkpoint = osp.join(work_dir, f'iter_{ITERS}.pth')
    saved = torch.load(checkpoint, weights_only=False)['state_dict']
    assert all(torch.equal(saved[k.removeprefix('module.')], v) for k, v in ranks[0].items())

    distributed = [r for r in read_scalars(work_dir) if 'bad_samples/skipped' in r]
    assert len(distributed) == 1 and distributed[0]['step'] == ITERS
    monkeypatch.syspath_prepend(str(root))  # the config's custom_imports
    monkeypatch.chdir(root)
    single = _evaluate_in_one_process(config, checkpoint, str(root / 'single'), options)
    keys = [k for k in single if '/' in k]
    assert 'shapes/coco/bbox_mAP' in keys and 'novel_grounding_unique_colour/flickr30k/Recall@1_all' in keys, keys
    print('2 ranks:', {k: v for k, v in distributed[0].items() if k in keys and v > 0})
    assert any(single[k] > 0 for k in keys if k != 'bad_samples/skipped')  # scored on real detections
    # the unreadable first sample was skipped by both ranks (the second one's copy is the sampler's padding)
    assert single['bad_samples/skipped'] == distributed[0]['bad_samples/skipped'] == 1.0
    assert {k: distributed[0].get(k) for k in keys} == pytest.approx({k: single[k] for k in keys}, abs=1e-12)
