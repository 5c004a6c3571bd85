"""tools/install: the C++20 compiler shims and the CUDA build script's flag and environment logic.

The compiles themselves take minutes (``build_mmcv_cuda.sh --ops DIR``); these tests run the shims against a
stand-in compiler that prints the arguments it receives, and the build script's dry run.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

INSTALL = Path(__file__).resolve().parents[2] / 'tools' / 'install'
BUILD = str(INSTALL / 'build_mmcv_cuda.sh')
# a compiler stand-in: one received argument per line
ECHO_ARGS = '#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n'


def _stand_in(folder: Path, name: str = 'compiler') -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ECHO_ARGS)
    path.chmod(0o755)
    return path


def _run(cmd: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize('script', ['cxx20.sh', 'nvcc_cxx20.sh', 'build_mmcv_cuda.sh'])
def test_syntax(script):
    assert subprocess.run(['bash', '-n', str(INSTALL / script)]).returncode == 0


def test_nvcc_shim_raises_the_standard_and_passes_everything_else(tmp_path):
    nvcc = _stand_in(tmp_path)
    args = ['-c', 'dir with space/nms_cuda.cu', '--compiler-options', "'-fPIC'", '-std=c++17', '--std=c++14',
            '-std=c++20', '-gencode=arch=compute_80,code=sm_80', '-DTORCH_EXTENSION_NAME=_ext']
    proc = _run([str(INSTALL / 'nvcc_cxx20.sh'), *args], dict(os.environ, FIBER_REAL_NVCC=str(nvcc)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        '-c', 'dir with space/nms_cuda.cu', '--compiler-options', "'-fPIC'", '-std=c++20', '--std=c++20',
        '-std=c++20', '-gencode=arch=compute_80,code=sm_80', '-DTORCH_EXTENSION_NAME=_ext']


def test_nvcc_shim_runs_cuda_homes_nvcc(tmp_path):
    _stand_in(tmp_path / 'bin', 'nvcc')
    env = dict(os.environ, CUDA_HOME=str(tmp_path))
    env.pop('FIBER_REAL_NVCC', None)
    proc = _run([str(INSTALL / 'nvcc_cxx20.sh'), '-std=c++17', '-c', 'x.cu'], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['-std=c++20', '-c', 'x.cu']
    env.pop('CUDA_HOME')
    proc = _run([str(INSTALL / 'nvcc_cxx20.sh'), '-c', 'x.cu'], env)
    assert proc.returncode != 0 and 'set CUDA_HOME or FIBER_REAL_NVCC' in proc.stderr


def test_cxx_shim_raises_the_standard(tmp_path):
    cxx = _stand_in(tmp_path)
    proc = _run([str(INSTALL / 'cxx20.sh'), '-std=c++17', '-O3', '-c', 'nms.cpp'],
                dict(os.environ, FIBER_REAL_CXX=str(cxx)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['-std=c++20', '-O3', '-c', 'nms.cpp']


def _dry_run(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    """The build script's dry run with ``overrides`` in its environment; a value of '' removes the variable.

    A stand-in ``nvidia-smi`` that fails comes first on PATH (a machine without a GPU) unless the
    caller passes its own PATH.
    """
    smi = tmp_path / 'no_gpu' / 'nvidia-smi'
    smi.parent.mkdir(exist_ok=True)
    smi.write_text('#!/bin/sh\nexit 9\n')
    smi.chmod(0o755)
    env = dict(os.environ, PYTHON=sys.executable, FIBER_TORCH_CUDA='13.0', TORCH_CUDA_ARCH_LIST='8.0;9.0',
               FIBER_CUDA_PREFIX=str(tmp_path / 'cuda'), PATH=f'{smi.parent}:{os.environ["PATH"]}')
    env.pop('FIBER_CUDA_HOME', None)
    env.update(overrides)
    env = {k: v for k, v in env.items() if v != ''}
    return _run(['bash', BUILD, '--dry-run'], env)


def _field(stdout: str, label: str) -> List[str]:
    return [line.split(':', 1)[1].strip() for line in stdout.splitlines() if line.startswith(label + ':')]


def test_dry_run_pypi_toolkit_and_cxx20_nvcc_flags(tmp_path):
    proc = _dry_run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # mmcv hands nvcc -std=c++17; the command nvcc actually runs has C++20 only
    assert '-std=c++17' in _field(out, 'mmcv nvcc flags')[0]
    nvcc_line = _field(out, 'nvcc runs')[0]
    cuda_home = tmp_path / 'cuda' / 'nvidia' / 'cu13'
    assert nvcc_line.startswith(f'{cuda_home}/bin/nvcc ')
    assert '-std=c++20' in nvcc_line.split() and 'c++17' not in nvcc_line and 'c++14' not in nvcc_line
    env = dict(item.split('=', 1) for item in _field(out, 'build env'))
    assert env['CUDA_HOME'] == str(cuda_home)
    assert env['CXX'] == str(INSTALL / 'cxx20.sh') and env['PYTORCH_NVCC'] == str(INSTALL / 'nvcc_cxx20.sh')
    assert (env['FORCE_CUDA'], env['MMCV_WITH_OPS'], env['TORCH_CUDA_ARCH_LIST']) == ('1', '1', '8.0;9.0')
    install = _field(out, 'toolkit install')[0].split()
    assert f'{tmp_path / "cuda"}' in install and '--no-deps' in install
    assert {p for p in install if '==' in p} == {
        f'{name}==13.0.*' for name in
        ('nvidia-cuda-nvcc', 'nvidia-cuda-crt', 'nvidia-nvvm', 'nvidia-cuda-cccl', 'nvidia-cuda-runtime')}
    build = _field(out, 'build command')[0].split()
    assert 'mmcv==2.1.0' in build and '--no-cache-dir' in build and '--no-build-isolation' in build


def test_dry_run_installed_toolkit(tmp_path):
    proc = _dry_run(tmp_path, FIBER_TORCH_CUDA='12.8', FIBER_CUDA_HOME='/opt/cuda-12.8')
    assert proc.returncode == 0, proc.stderr
    env = dict(item.split('=', 1) for item in _field(proc.stdout, 'build env'))
    assert env['CUDA_HOME'] == '/opt/cuda-12.8' and env['FIBER_REAL_NVCC'] == '/opt/cuda-12.8/bin/nvcc'
    assert 'CPATH' not in env and not _field(proc.stdout, 'toolkit install')


@pytest.mark.parametrize('overrides, message', [
    (dict(FIBER_TORCH_CUDA='none'), 'CPU-only build'),
    (dict(FIBER_TORCH_CUDA='12.8'), 'set FIBER_CUDA_HOME to a CUDA 12.8 toolkit'),
    (dict(TORCH_CUDA_ARCH_LIST=''), 'no GPU visible: set TORCH_CUDA_ARCH_LIST'),
])
def test_dry_run_refuses_with_the_reason(tmp_path, overrides, message):
    proc = _dry_run(tmp_path, **overrides)
    assert proc.returncode == 1 and message in proc.stderr, proc.stdout + proc.stderr


def test_arch_list_from_visible_gpus(tmp_path):
    smi = tmp_path / 'gpus' / 'nvidia-smi'
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\nprintf "9.0\\n8.0\\n9.0\\n"\n')  # two H100s and an A100
    smi.chmod(0o755)
    proc = _dry_run(tmp_path, TORCH_CUDA_ARCH_LIST='', PATH=f'{smi.parent}:{os.environ["PATH"]}')
    assert proc.returncode == 0, proc.stderr
    assert 'TORCH_CUDA_ARCH_LIST=8.0;9.0' in _field(proc.stdout, 'build env')


def test_narrow_glob_keeps_only_the_listed_sources(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location('mmcv_subset_build', INSTALL / 'mmcv_subset_build.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    csrc = tmp_path / 'mmcv' / 'ops' / 'csrc'
    for rel in ('pytorch/cuda/nms_cuda.cu', 'pytorch/cuda/roi_align_cuda.cu', 'pytorch/nms.cpp',
                'pytorch/roi_align.cpp'):
        (csrc / rel).parent.mkdir(parents=True, exist_ok=True)
        (csrc / rel).write_text('')
    (tmp_path / 'requirements').mkdir()
    (tmp_path / 'requirements' / 'runtime.txt').write_text('')
    monkeypatch.chdir(tmp_path)  # mmcv's setup.py globs relative to its folder
    narrowed = module.narrow_glob(['pytorch/cuda/nms_cuda.cu', 'pytorch/nms.cpp'], str(csrc))
    assert narrowed('./mmcv/ops/csrc/pytorch/cuda/*.cu') == ['./mmcv/ops/csrc/pytorch/cuda/nms_cuda.cu']
    assert narrowed('./mmcv/ops/csrc/pytorch/*.cpp') == ['./mmcv/ops/csrc/pytorch/nms.cpp']
    assert narrowed('./requirements/*.txt') == ['./requirements/runtime.txt']


def test_fiber_ops_sources_exist_in_mmcv():
    """The translation units ``--ops`` compiles are files of mmcv's source tree (mmcv installs its csrc)."""
    text = (INSTALL / 'build_mmcv_cuda.sh').read_text()
    block = text.split('FIBER_OPS_SOURCES=(\n', 1)[1].split('\n)', 1)[0]
    sources = block.split()
    assert 'pytorch/cuda/nms_cuda.cu' in sources and 'pytorch/cuda/modulated_deform_conv_cuda.cu' in sources
    csrc = Path(importlib.util.find_spec('mmcv').submodule_search_locations[0]) / 'ops' / 'csrc'
    assert [s for s in sources if not (csrc / s).is_file()] == []
