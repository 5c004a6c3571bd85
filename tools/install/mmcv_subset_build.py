"""Compile a chosen subset of mmcv's C++/CUDA sources exactly as ``pip install mmcv`` would.

Runs mmcv's own ``setup.py build_ext`` (so the flags come from mmcv's setup.py and torch's
``BuildExtension``: ``-std=c++17``, ``-D__CUDA_NO_HALF_OPERATORS__``, the ``-gencode`` list from
``TORCH_CUDA_ARCH_LIST``, include paths, defines), but with ``glob.glob`` narrowed to the listed sources.
The full CUDA build is about 150 translation units; a few of them are enough to check that the compiler,
the CUDA headers and the language-standard fix work, in minutes instead of hours. The environment
(``CUDA_HOME``, ``CXX``, ``NVCC_APPEND_FLAGS``, ``FORCE_CUDA``, ``TORCH_CUDA_ARCH_LIST``) is taken as given,
so the caller tests the same settings the real install uses.

Usage::

    python mmcv_subset_build.py --src /path/to/mmcv-2.1.0 --build-dir /tmp/out \
        pytorch/nms.cpp pytorch/cuda/nms_cuda.cu
"""
import argparse
import glob
import os
import runpy
import sys
import time
from typing import Callable, List


def narrow_glob(wanted: List[str], csrc: str) -> Callable[..., List[str]]:
    """A ``glob.glob`` that keeps, from patterns under ``csrc``, only the files listed in ``wanted``.

    ``wanted`` holds paths relative to ``csrc`` (e.g. ``pytorch/cuda/nms_cuda.cu``); patterns elsewhere
    (mmcv's package data, requirements) are answered unchanged.
    """
    real_glob = glob.glob

    def narrowed(pattern: str, *args, **kwargs) -> List[str]:
        found = real_glob(pattern, *args, **kwargs)
        if not os.path.abspath(pattern).startswith(csrc + os.sep):
            return found
        return [f for f in found if os.path.relpath(os.path.abspath(f), csrc) in wanted]

    return narrowed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--src', required=True, help='unpacked mmcv source distribution')
    parser.add_argument('--build-dir', required=True, help='objects go to BUILD_DIR/temp, the library to BUILD_DIR/lib')
    parser.add_argument('sources', nargs='+', help='paths relative to mmcv/ops/csrc')
    args = parser.parse_args()

    src = os.path.abspath(args.src)
    csrc = os.path.join(src, 'mmcv', 'ops', 'csrc')
    missing = [s for s in args.sources if not os.path.isfile(os.path.join(csrc, s))]
    if missing:
        print(f'error: not in {csrc}: {", ".join(missing)}', file=sys.stderr)
        return 2
    build_dir = os.path.abspath(args.build_dir)
    os.makedirs(build_dir, exist_ok=True)

    glob.glob = narrow_glob(list(args.sources), csrc)
    os.chdir(src)  # mmcv's setup.py globs relative paths ('./mmcv/ops/csrc/...')
    sys.argv = ['setup.py', 'build_ext', '--build-temp', os.path.join(build_dir, 'temp'),
                '--build-lib', os.path.join(build_dir, 'lib')]
    start = time.time()
    try:
        runpy.run_path('setup.py', run_name='__main__')
    except SystemExit as e:  # setuptools exits with the failing command's message on a link error
        if e.code not in (None, 0):
            print(f'error: build_ext failed after {time.time() - start:.0f} s: {e.code}', file=sys.stderr)
            return 1
    except RuntimeError as e:  # torch's ninja build: "Error compiling objects for extension", after the log
        print(f'error: build_ext failed after {time.time() - start:.0f} s: {e}', file=sys.stderr)
        return 1
    print(f'build_ext finished in {time.time() - start:.0f} s; objects under {build_dir}/temp')
    return 0


if __name__ == '__main__':
    sys.exit(main())
