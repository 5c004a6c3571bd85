"""``--compile`` of tools/train.py and tools/test.py sets the config's ``compile`` (which MMEngine's Runner reads
for the training step and ``compile_evaluation_steps`` for the evaluation steps); a ``compile`` dict of
``torch.compile`` arguments in the config or ``--cfg-options`` is kept."""
import argparse
import os.path as osp

from fiber_mmdet.engine.cli import add_runner_args, load_runner_config

CONFIG = 'configs/toy/fiber_toy_attribute_first.py'


def _load(repo_root, *argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--work-dir')
    add_runner_args(parser)
    return load_runner_config(parser.parse_args([osp.join(repo_root, CONFIG), *argv]))


def test_compile_flag_sets_the_config_key(repo_root):
    assert not _load(repo_root).get('compile')
    assert _load(repo_root, '--compile').compile is True


def test_compile_arguments_from_the_config_are_kept(repo_root):
    cfg = _load(repo_root, '--compile', '--cfg-options', 'compile.backend=aot_eager', 'compile.dynamic=True')
    assert cfg.compile == dict(backend='aot_eager', dynamic=True)
