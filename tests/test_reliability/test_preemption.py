"""Pre-emption: SIGTERM / SIGUSR1 stop training after the current iteration with a checkpoint of it and exit
status 75; ``--resume`` then gives exactly the losses of an uninterrupted run. Checked through tools/train.py on
the tool tests' tiny ATSS (a real signal from outside), on two gloo ranks of which only one gets the signal, and
in an epoch-based run stopped in the middle of an epoch. ``--resume`` also passes over a newest checkpoint that
does not load."""
import glob
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from fiber_mmdet.engine.hooks import PREEMPTED_EXIT_CODE, TrainingPreempted
from ..test_engine.conftest import RecordHook, ToyDataset, ToyGroundingModel
from ..test_engine.dist_helpers import run_on_ranks
from .conftest import REPO_ROOT, TOOLS, run_tool_status
from .preemption_helpers import tiny_configs
from .test_kill_and_resume import _losses


def _start_tool(args, cwd, pythonpath) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), pythonpath]))
    env.setdefault('OMP_NUM_THREADS', '1')
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(path: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not osp.exists(path):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f'{path} did not appear'
        time.sleep(0.1)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """The tiny configs and an uninterrupted 5-iteration run of them (checkpoints at 2 and 4)."""
    root = tmp_path_factory.mktemp('preemption')
    config, waiting = tiny_configs(root, max_iters=5, wait_after=3)
    full = str(root / 'full')
    rc, out = run_tool_status([str(TOOLS / 'train.py'), str(config), '--work-dir', full], str(root))
    assert rc == 0, out[-3000:]
    return root, config, waiting, full


def test_sigterm_saves_exits_75_and_resume_gives_the_uninterrupted_losses(uninterrupted):
    tmp_path, config, waiting, full = uninterrupted
    interrupted = str(tmp_path / 'interrupted')
    proc = _start_tool([str(TOOLS / 'train.py'), str(waiting), '--work-dir', interrupted], str(tmp_path),
                       str(tmp_path))
    _wait_for(osp.join(interrupted, 'ready'), proc)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == PREEMPTED_EXIT_CODE == 75, out[-3000:]
    checkpoint = osp.join(interrupted, 'iter_3.pth')  # between the regular ones (every 2 iterations)
    assert (f'SIGTERM: training stopped after iteration 3; its checkpoint {checkpoint} is saved. Run the same '
            'command with --resume to continue. Exit status 75 (pre-empted).') in out
    assert open(osp.join(interrupted, 'last_checkpoint')).read() == checkpoint
    assert 'Traceback' not in out

    rc, out = run_tool_status([str(TOOLS / 'train.py'), str(config), '--work-dir', interrupted, '--resume'],
                              str(tmp_path))
    assert rc == 0 and f'resuming from {checkpoint}' in out and 'resumed epoch: 0, iter: 3' in out, out[-3000:]
    expected, resumed = _losses(full), _losses(interrupted)
    assert sorted(expected) == [1, 2, 3, 4, 5]
    for iteration in (4, 5):
        assert resumed[iteration] == expected[iteration], iteration
    full_weights = torch.load(osp.join(full, 'iter_5.pth'), weights_only=True)['state_dict']
    resumed_weights = torch.load(osp.join(interrupted, 'iter_5.pth'), weights_only=True)['state_dict']
    assert all(torch.equal(v, resumed_weights[k]) for k, v in full_weights.items())


def test_resume_skips_a_truncated_newest_checkpoint(uninterrupted):
    """The newest checkpoint (named by last_checkpoint) was copied half-way: --resume names it with the reason,
    resumes from the one before and trains the uninterrupted losses; with none readable it stops naming them."""
    tmp_path, config, _, full = uninterrupted
    work_dir = tmp_path / 'truncated'
    work_dir.mkdir()
    older, newest = str(work_dir / 'iter_2.pth'), str(work_dir / 'iter_4.pth')
    shutil.copy(osp.join(full, 'iter_2.pth'), older)
    data = open(osp.join(full, 'iter_4.pth'), 'rb').read()
    open(newest, 'wb').write(data[:len(data) // 2])
    (work_dir / 'last_checkpoint').write_text(newest)
    rc, out = run_tool_status([str(TOOLS / 'train.py'), str(config), '--work-dir', str(work_dir), '--resume'],
                              str(tmp_path))
    assert rc == 0, out[-3000:]
    assert (f'skipping checkpoint {newest}: ValueError: {newest}: the checkpoint is truncated ({len(data) // 2} '
            'bytes; the end of its zip archive is missing)') in out
    assert f'resuming from {older} (skipped 1 newer checkpoint(s) that do not load)' in out
    expected, resumed = _losses(full), _losses(str(work_dir))
    assert sorted(resumed) == [3, 4, 5] and all(resumed[i] == expected[i] for i in (3, 4, 5))
    assert open(work_dir / 'last_checkpoint').read() == str(work_dir / 'iter_5.pth')

    # nothing readable: every checkpoint named, nothing trained
    for path in glob.glob(str(work_dir / '*.pth')):
        with open(path, 'r+b') as f:
            f.truncate(1000)
    rc, out = run_tool_status([str(TOOLS / 'train.py'), str(config), '--work-dir', str(work_dir), '--resume'],
                              str(tmp_path))
    assert rc != 0 and f'--resume: no checkpoint in {work_dir} can be read:' in out, out[-3000:]
    assert all(f'  {work_dir / name}: ValueError' in out for name in ('iter_5.pth', 'iter_4.pth', 'iter_2.pth'))


# ------------------------------------------------------------------------------------- in-process toy runs
class SignalAfterIter(Hook):
    """Sends ``signum`` to its own process after ``iteration`` (on ``rank`` only, if given)."""
    priority = 'LOWEST'

    def __init__(self, iteration: int, signum: int, rank=None) -> None:
        self.iteration, self.signum, self.rank = iteration, signum, rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration and self.rank in (None, runner.rank):
            os.kill(os.getpid(), self.signum)


def _toy_runner(work_dir: str, name: str, hooks, epochs: bool = False, resume: bool = False) -> Runner:
    train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=2) if epochs else dict(
        by_epoch=False, max_iters=6)
    torch.manual_seed(0)  # the model is built before the Runner seeds
    return Runner(
        model=ToyGroundingModel(), work_dir=work_dir, experiment_name=name, default_scope='mmdet',
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2,
                              num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01, weight_decay=0.1)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
                         dict(type='MultiStepLR', milestones=[1], gamma=0.1, by_epoch=True)],
        train_cfg=train_cfg,
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1, by_epoch=epochs,
                                           max_keep_ckpts=1),
                           preemption=dict(type='PreemptionHook')),
        custom_hooks=hooks, log_processor=dict(window_size=1, by_epoch=epochs), randomness=dict(seed=0),
        resume=resume)


def _stop_on_ranks(rank, world_size, work_dir):
    runner = _toy_runner(work_dir, f'ranks{rank}', [SignalAfterIter(2, signal.SIGUSR1, rank=1)])
    try:
        runner.train()
    except TrainingPreempted as stop:
        return stop.code, runner.iter, str(stop)
    return None, runner.iter, 'not stopped'


def test_ranks_stop_together_when_one_gets_the_signal(tmp_path):
    """Two gloo ranks, SIGUSR1 to rank 1 only: both stop before iteration 3, rank 0 writes the checkpoint."""
    results = run_on_ranks(_stop_on_ranks, 2, (str(tmp_path),), timeout=120)
    checkpoint = osp.join(str(tmp_path), 'iter_2.pth')
    assert [r[:2] for r in results] == [(75, 2), (75, 2)]
    assert results[0][2].startswith('a signal received by another rank: training stopped after iteration 2')
    assert results[1][2].startswith(f'SIGUSR1: training stopped after iteration 2; its checkpoint {checkpoint}')
    assert open(osp.join(str(tmp_path), 'last_checkpoint')).read() == checkpoint
    assert torch.load(checkpoint, weights_only=True)['meta']['iter'] == 2


def test_epoch_based_run_stopped_mid_epoch_resumes_where_it_stopped(tmp_path):
    """8 iterations an epoch; SIGTERM after iteration 5 (epoch 1 of 2); the resumed run skips the epoch's first 5
    batches and trains iterations 6-16 as the uninterrupted run does (losses, learning rates, weight decays)."""
    full, stopped = RecordHook(), RecordHook()
    _toy_runner(str(tmp_path / 'full'), 'epochs_full', [full], epochs=True).train()
    work_dir = str(tmp_path / 'stopped')
    with pytest.raises(TrainingPreempted) as raised:
        _toy_runner(work_dir, 'epochs_stopped', [SignalAfterIter(5, signal.SIGTERM)], epochs=True).train()
    assert raised.value.code == 75
    assert sorted(p for p in os.listdir(work_dir) if p.endswith('.pth')) == ['iter_5.pth']  # no epoch one yet
    _toy_runner(work_dir, 'epochs_resumed', [stopped], epochs=True, resume=True).train()
    assert sorted(stopped.records) == list(range(5, 16))
    for iteration, values in stopped.records.items():
        assert values == full.records[iteration], iteration
    # the mid-epoch checkpoint goes once the next regular one is saved
    assert sorted(p for p in os.listdir(work_dir) if p.endswith('.pth')) == ['epoch_2.pth']
