"""A training run killed with SIGKILL (no clean-up of any kind) resumes from its last checkpoint and then gives
exactly the losses of an uninterrupted run (tiny ATSS of the tool tests, through tools/train.py)."""
import glob
import json
import os.path as osp
import signal

from ..test_tools.conftest import CONFIG_TEMPLATE, write_tiny_coco
from .conftest import TOOLS, run_tool_status

KILL_HOOK = '''
import os
import signal

from mmengine.hooks import Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class SigkillAfterIter(Hook):
    """Kills its own process, as an out-of-memory killer or a pre-empted node does."""
    priority = 'LOWEST'  # after the checkpoint hook

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def _losses(work_dir: str) -> dict:
    records = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):  # later runs win
        for line in open(path):
            record = json.loads(line)
            if 'loss' in record:
                records[record['iter']] = (record['loss'], record['loss_cls'], record['loss_bbox'])
    return records


def test_sigkill_then_resume_gives_the_uninterrupted_losses(tmp_path):
    root = tmp_path / 'data'
    write_tiny_coco(root)
    config = tmp_path / 'tiny.py'
    config.write_text(CONFIG_TEMPLATE.format(data_root=str(root)) + 'train_cfg = dict(type="IterBasedTrainLoop", '
                      'max_iters=6)\n')
    (tmp_path / 'kill_hook.py').write_text(KILL_HOOK)
    killing = tmp_path / 'tiny_killed.py'
    killing.write_text(f'_base_ = [{str(config)!r}]\ncustom_imports = dict(imports=["kill_hook"])\n'
                       'custom_hooks = [dict(type="WeightDecayScheduleHook", milestones=[3], gamma=0.1, '
                       'fraction=0.667),'
                       ' dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=0.001, '
                       'update_buffers=True, priority=49), dict(type="SigkillAfterIter", iteration=3)]\n')
    full, interrupted = str(tmp_path / 'full'), str(tmp_path / 'interrupted')
    rc, out = run_tool_status([str(TOOLS / 'train.py'), str(config), '--work-dir', full], str(tmp_path))
    assert rc == 0, out[-3000:]
    rc, out = run_tool_status([str(TOOLS / 'train.py'), str(killing), '--work-dir', interrupted], str(tmp_path),
                              extra_env=dict(PYTHONPATH=str(tmp_path)))
    assert rc == -signal.SIGKILL and not osp.exists(osp.join(interrupted, 'iter_4.pth')), out[-3000:]
    rc, out = run_tool_status([str(TOOLS / 'train.py'), str(config), '--work-dir', interrupted, '--resume'],
                              str(tmp_path))
    assert rc == 0 and 'resumed' in out.lower(), out[-3000:]
    expected, resumed = _losses(full), _losses(interrupted)
    assert sorted(expected) == [1, 2, 3, 4, 5, 6]
    for iteration in (3, 4, 5, 6):  # iteration 3 ran twice: killed after it, redone from iter_2.pth
        assert resumed[iteration] == expected[iteration], iteration
