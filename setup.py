"""Install fiber_mmdet: FIBER (fine-grained stage) as an MMDetection 3.x plugin.

A built package (wheel, ``pip install .``) also carries ``configs/`` as ``fiber_mmdet/.mim/configs``, where
MMEngine looks for a package's configs: another project then inherits ours with
``_base_ = 'fiber_mmdet::toy/fiber_toy.py'`` (after ``import fiber_mmdet``, see ``fiber_mmdet/__init__.py``).
``configs/`` stays the one source: the copy is made in the build directory, never in the checkout.
"""
import os
import shutil
from typing import List

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# MMEngine (mmengine/config/utils.py) resolves `PACKAGE::PATH` as PACKAGE/.mim/configs/PATH after looking PATH up
# in PACKAGE/.mim/model-index.yml: that file must exist, and a path it does not list is taken as given.
MIM_DIR = os.path.join('fiber_mmdet', '.mim')
MODEL_INDEX = """\
# Read by MMEngine before it resolves `fiber_mmdet::PATH` to configs/PATH. No config is listed with downloadable
# weights (the official FIBER checkpoints are converted locally, see the README), so every path is taken as given.
Import: []
"""


def read_version() -> str:
    scope: dict = {}
    with open('fiber_mmdet/version.py', encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(path: str) -> list:
    """The requirement lines of ``path`` (comments and blank lines dropped, ``-r FILE`` followed)."""
    lines = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if line.startswith('-r '):
                lines += read_requirements(os.path.join(os.path.dirname(path), line[3:].strip()))
            elif line and not line.startswith('#'):
                lines.append(line)
    return lines


class BuildPyWithConfigs(build_py):
    """``build_py`` that also copies ``configs/`` (and a model index) into the built ``fiber_mmdet/.mim/``.

    Editable installs run from the checkout and are left alone: there ``configs/`` is used in place.
    """

    def _mim_files(self) -> List[str]:
        return [os.path.join(root, name) for root, _, names in os.walk('configs') for name in names
                if name.endswith('.py')]

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        target = os.path.join(self.build_lib, MIM_DIR)
        shutil.rmtree(target, ignore_errors=True)  # a config deleted from configs/ must not survive in build/
        for path in self._mim_files():
            dst = os.path.join(target, path)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(path, dst)
        with open(os.path.join(target, 'model-index.yml'), 'w', encoding='utf-8') as f:
            f.write(MODEL_INDEX)

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, 'editable_mode', False):
            return outputs
        mim = [os.path.join(self.build_lib, MIM_DIR, p) for p in self._mim_files() + ['model-index.yml']]
        return outputs + mim


setup(
    name='fiber_mmdet',
    version=read_version(),
    description='FIBER (Fusion-In-the-Backbone transformER) for MMDetection 3.x',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['fiber_mmdet', 'fiber_mmdet.*']),
    python_requires='>=3.9',
    # torch and mmcv (with compiled ops) are installed by `make setup`, see the README:
    # mmcv 2.1.0 is a source build that must be compiled against the installed torch.
    install_requires=[
        'mmengine>=0.10.0,<0.11',
        'mmdet==3.3.0',
        'mmpretrain>=1.2.0,<1.3',
        'transformers>=4.38,<4.50',  # mmpretrain 1.2 needs internals removed in 4.50
        'tokenizers>=0.20,<0.22',
        'pycocotools',
        'lvis==0.5.3',
    ],
    # the web demo (demo/gradio_demo.py): pip install -e .[demo]; the ONNX runtime (fiber_mmdet.runtime,
    # demo/onnx_demo.py): .[deploy]; exporting checkpoints to ONNX (tools/deployment/export_onnx.py): .[export]
    extras_require={
        'demo': read_requirements('requirements-demo.txt'),
        'deploy': read_requirements('requirements-deploy.txt'),
        'export': read_requirements('requirements-export.txt'),
    },
    license='Apache-2.0',
    cmdclass={'build_py': BuildPyWithConfigs},
    zip_safe=False,
)
