"""The configs travel with the package: a wheel built from this checkout, installed in a fresh virtual
environment, lets a project outside the repository inherit them as ``fiber_mmdet::PATH``.

The environment sees this Python's packages (torch, mmcv, mmdet) but not the checkout: its site-packages lists the
shared one as a plain path, so the shared one's ``.pth`` files (among them the checkout's editable install, whose
import hook would serve any module the wheel lacks) are not run. The wheel is installed into it, the project runs
in a folder of its own, and the test checks that ``fiber_mmdet`` is imported from the wheel.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest
from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# what the wheel is built from (setup.py reads the README and the requirement files)
SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'LICENSE', 'CITATION.cff', 'requirements.txt',
           'requirements-demo.txt', 'requirements-test.txt', 'requirements-deploy.txt', 'requirements-export.txt',
           'fiber_mmdet', 'configs')
# the user's configs: (file, its _base_, a line of its own)
PROJECT_CONFIGS = {
    'my_fiber_b.py': ("'fiber_mmdet::_base_/models/fiber_b.py'", "model = dict(backbone=dict(drop_path_rate=0.2))"),
    'my_zero_shot.py': ("'fiber_mmdet::_base_/fiber_b_zero_shot.py'", 'dataset_help = "my data"'),
    'my_finetune.py': ("['fiber_mmdet::_base_/fiber_b_zero_shot.py', 'fiber_mmdet::_base_/fiber_b_finetune.py']",
                       'max_epochs = 2'),
    'my_odinw.py': ("'fiber_mmdet::odinw/fiber_b_odinw13_finetune.py'", 'max_epochs = 12'),
    'my_toy.py': ("'fiber_mmdet::toy/fiber_toy.py'", 'train_cfg = dict(max_iters=2, val_interval=100)'),
}
# run in the environment, in the project folder: loads each config, builds the toy model from the installed
# config (as MMEngine's Runner does, default scope mmdet) and its validation dataset, trains it 2 iterations
SCRIPT = r'''
import json, os, sys
import fiber_mmdet
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmdet.registry import DATASETS, MODELS
from fiber_mmdet.datasets import generate_toy_dataset

out = dict(fiber_mmdet=fiber_mmdet.__file__, configs={})
for name in sys.argv[1:]:
    cfg = Config.fromfile(name)
    out['configs'][name] = dict(model_type=cfg.model.type, arch=str(cfg.model.backbone.arch),
                                drop_path_rate=cfg.model.backbone.drop_path_rate, keys=sorted(cfg.keys()))
hub = get_config('fiber_mmdet::toy/fiber_toy.py')
out['hub_filename'] = hub.filename
out['hub_max_iters'] = hub.max_iters

generate_toy_dataset('data/toy_shapes', seed=0, num_train_od=4, num_train_od_attr=4, num_train_vg=4, num_val=2,
                     num_grounding=2)
cfg = Config.fromfile('my_toy.py')
out['model_scope'] = cfg.model.get('_scope_')
init_default_scope(cfg.default_scope)
model = MODELS.build(cfg.model)
out['toy_parameters'] = sum(p.numel() for p in model.parameters())
out['val_images'] = len(DATASETS.build(cfg.val_dataloader.dataset))
cfg.work_dir = 'work_dirs/my_toy'
for loader in (cfg.train_dataloader, cfg.val_dataloader):
    loader.update(num_workers=0, persistent_workers=False)
runner = Runner.from_cfg(cfg)
runner.train()
out['trained_iters'] = runner.iter
print('RESULT ' + json.dumps(out))
'''


def _run(cmd, cwd, env=None, timeout=300):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f'{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}'
    return result.stdout


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(python of a venv with the wheel installed, the wheel's file names, project folder)."""
    root = tmp_path_factory.mktemp('packaging')
    src = root / 'src'
    src.mkdir()
    for name in SOURCES:
        path = osp.join(REPO_ROOT, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '.mim'))
        else:
            shutil.copy(path, src / name)
    dist = root / 'dist'
    _run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '--no-index', str(src),
          '-w', str(dist)], cwd=root)
    wheel = next(dist.glob('fiber_mmdet-*.whl'))
    venv = root / 'venv'
    _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], cwd=root)
    python = str(venv / 'bin' / 'python')
    site = _run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], cwd=root).strip()
    shared = dict.fromkeys(sysconfig.get_paths()[k] for k in ('purelib', 'platlib'))
    with open(osp.join(site, '_shared_site_packages.pth'), 'w') as f:
        f.write(''.join(f'{path}\n' for path in shared))
    # pip from the shared packages installs into the venv; --ignore-installed leaves the checkout's editable install
    # (outside the venv) alone
    _run([python, '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', '--ignore-installed', str(wheel)],
         cwd=root)
    import zipfile
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    project = root / 'my_project'
    project.mkdir()
    for name, (base, line) in PROJECT_CONFIGS.items():
        (project / name).write_text(f'_base_ = {base}\n{line}\n')
    return python, names, project


def test_wheel_carries_every_config(installed):
    _, names, _ = installed
    shipped = sorted(n[len('fiber_mmdet/.mim/configs/'):] for n in names if n.startswith('fiber_mmdet/.mim/configs/'))
    in_repo = sorted(osp.relpath(osp.join(d, f), osp.join(REPO_ROOT, 'configs'))
                     for d, _, files in os.walk(osp.join(REPO_ROOT, 'configs')) for f in files if f.endswith('.py'))
    assert shipped == in_repo
    assert 'fiber_mmdet/.mim/model-index.yml' in names  # MMEngine reads it before it takes a path as given
    assert not any(n.startswith('configs/') for n in names)


def test_project_outside_the_repository_uses_installed_configs(installed):
    python, _, project = installed
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(OMP_NUM_THREADS='1', PYTHONDONTWRITEBYTECODE='1')
    stdout = _run([python, '-c', textwrap.dedent(SCRIPT), *[n for n in PROJECT_CONFIGS if n != 'my_toy.py']],
                  cwd=project, env=env)
    out = json.loads(stdout.split('RESULT ', 1)[1])
    venv = osp.dirname(osp.dirname(python))
    # the wheel's package, not the checkout's editable install
    assert out['fiber_mmdet'].startswith(venv) and not out['fiber_mmdet'].startswith(REPO_ROOT)
    configs = out['configs']
    assert configs['my_fiber_b.py']['model_type'] == 'FIBER' and configs['my_fiber_b.py']['arch'] == 'base'
    assert configs['my_fiber_b.py']['drop_path_rate'] == 0.2  # the project's own line merged over the base
    # each project config holds what the same config read from the checkout holds
    for name, repo_config in (('my_zero_shot.py', '_base_/fiber_b_zero_shot.py'),
                              ('my_odinw.py', 'odinw/fiber_b_odinw13_finetune.py')):
        want = Config.fromfile(osp.join(REPO_ROOT, 'configs', repo_config))
        assert configs[name]['keys'] == sorted(want.keys()), name
    finetune_keys = set(Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', 'fiber_b_finetune.py')).keys())
    assert finetune_keys <= set(configs['my_finetune.py']['keys'])
    assert out['hub_filename'].startswith(osp.join(venv, 'lib')) and out['hub_filename'].endswith(
        osp.join('fiber_mmdet', '.mim', 'configs', 'toy', 'fiber_toy.py'))
    assert out['hub_max_iters'] == Config.fromfile(osp.join(REPO_ROOT, 'configs', 'toy', 'fiber_toy.py')).max_iters
    # the toy model from the installed config, its data under the project's data/ (the config's relative paths),
    # MMEngine's scope for a base from another package resolved to fiber_mmdet's registry nodes
    assert out['model_scope'] == 'fiber_mmdet'
    assert out['toy_parameters'] > 100_000
    annotations = project / 'data' / 'toy_shapes' / 'annotations'
    val_images = sum(len(json.loads((annotations / name).read_text())['images'])
                     for name in ('val_coco.json', 'grounding_val.json', 'grounding_unique_colour_val.json'))
    assert out['val_images'] == val_images >= 4
    assert out['trained_iters'] == 2
