"""A hook that holds training after an iteration until a pre-emption signal arrives, so that a test can send the
signal from outside at a known iteration, and configs of the tool tests' tiny ATSS that use it."""
from pathlib import Path

from ..test_tools.conftest import CONFIG_TEMPLATE, write_tiny_coco

WAIT_HOOK = '''
import os
import time

from mmengine.hooks import Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class WaitForSignalAfterIter(Hook):
    """After ``iteration``, writes ``work_dir/ready`` and waits (at most 60 s) until PreemptionHook got a signal."""
    priority = 'LOWEST'

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 != self.iteration:
            return
        open(os.path.join(runner.work_dir, 'ready'), 'w').close()
        deadline = time.monotonic() + 60
        while not any(getattr(h, 'received', None) for h in runner.hooks) and time.monotonic() < deadline:
            time.sleep(0.02)
'''


def tiny_configs(root: Path, max_iters: int, wait_after: int):
    """Writes the tiny data set, ``tiny.py`` (``max_iters`` iterations, a checkpoint every 2) and ``tiny_wait.py``
    (the same, held after iteration ``wait_after`` until a signal; needs ``root`` on PYTHONPATH); returns both."""
    write_tiny_coco(root / 'data')
    config = root / 'tiny.py'
    config.write_text(CONFIG_TEMPLATE.format(data_root=str(root / 'data'))
                      + f'train_cfg = dict(type="IterBasedTrainLoop", max_iters={max_iters})\n')
    (root / 'wait_hook.py').write_text(WAIT_HOOK)
    waiting = root / 'tiny_wait.py'
    waiting.write_text(f'_base_ = [{str(config)!r}]\ncustom_imports = dict(imports=["wait_hook"])\n'
                       'custom_hooks = _base_.custom_hooks + '
                       f'[dict(type="WaitForSignalAfterIter", iteration={wait_after})]\n')
    return config, waiting
