"""Install fiber_mmdet: FIBER (fine-grained stage) as an MMDetection 3.x plugin."""
from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open('fiber_mmdet/version.py', encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(path: str) -> list:
    """The requirement lines of ``path`` (comments and blank lines dropped)."""
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


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
    # the web demo (demo/gradio_demo.py): pip install -e .[demo]
    extras_require={'demo': read_requirements('requirements-demo.txt')},
    license='Apache-2.0',
    zip_safe=False,
)
