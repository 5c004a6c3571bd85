"""A save that fails part-way -- a full disk (ENOSPC injected at the write, after half the bytes went out), a file
size limit the kernel enforces (RLIMIT_FSIZE: EFBIG) -- leaves the previous checkpoint readable and named by
``last_checkpoint``, no partial file, and an error naming the folder and the bytes needed, even with
``max_keep_ckpts=1`` (MMEngine's CheckpointHook removes the old checkpoint before writing the new one).

The toy regression model of the engine tests trains in-process (milliseconds per iteration) with a 4 MiB buffer,
so that its checkpoints are large enough to cut in half."""
import errno
import glob
import os
import os.path as osp
import resource
import signal
import zipfile

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.runner import Runner

from fiber_mmdet.engine.checkpoint import (CheckpointSaveError, atomic_write, checkpoint_problem,
                                           find_resumable_checkpoint)
from ..test_engine.conftest import ToyDataset, ToyGroundingModel

BALLAST = 2**20  # float32 values: 4 MiB in every checkpoint


class BallastModel(ToyGroundingModel):
    """The engine tests' toy model with a 4 MiB buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer('ballast', torch.zeros(BALLAST))


class FaultBeforeSave(Hook):
    """Calls ``arm()`` after ``iteration`` trained, before the checkpoint hook saves it."""
    priority = 'LOW'  # the checkpoint hook is VERY_LOW

    def __init__(self, iteration: int, arm) -> None:
        self.iteration, self.arm = iteration, arm

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            self.arm()


def _runner(work_dir: str, fault: Hook) -> Runner:
    return Runner(
        model=BallastModel(), work_dir=work_dir, experiment_name=osp.basename(work_dir), default_scope='mmdet',
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2,
                              num_workers=0, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=4),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1, by_epoch=False,
                                           max_keep_ckpts=1)),
        custom_hooks=[fault], randomness=dict(seed=0))


def _assert_previous_kept(work_dir: str) -> None:
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(work_dir, '*.pth'))) == ['iter_2.pth']
    assert not glob.glob(osp.join(work_dir, '.*.tmp'))
    assert checkpoint_problem(osp.join(work_dir, 'iter_2.pth')) is None
    assert open(osp.join(work_dir, 'last_checkpoint')).read() == osp.join(work_dir, 'iter_2.pth')
    assert find_resumable_checkpoint(work_dir, log=lambda line: None) == osp.join(work_dir, 'iter_2.pth')


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    work_dir = str(tmp_path)
    real_write = os.write
    full = []

    def write(fd, data):
        if not full:
            return real_write(fd, data)
        real_write(fd, bytes(memoryview(data)[:len(data) // 2]))  # half of it reaches the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'write', write)
    with pytest.raises(CheckpointSaveError) as raised:
        _runner(work_dir, FaultBeforeSave(3, lambda: full.append(True))).train()
    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC
    assert f'could not write {osp.join(work_dir, "iter_3.pth")}: no space left on device (needs 4.' in message
    assert f'free in {work_dir}); no partial file is left. Training stopped; the last checkpoint, ' \
        f'{osp.join(work_dir, "iter_2.pth")}, is kept' in message
    _assert_previous_kept(work_dir)


def test_file_size_limit_while_saving_keeps_the_previous_checkpoint(tmp_path):
    """A real short write: the kernel refuses bytes past RLIMIT_FSIZE (EFBIG, SIGXFSZ ignored)."""
    work_dir = str(tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (osp.getsize(osp.join(work_dir, 'iter_2.pth')) // 2, hard))

    try:
        with pytest.raises(CheckpointSaveError, match='file too large for this process or file system') as raised:
            _runner(work_dir, FaultBeforeSave(3, limit_files)).train()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert raised.value.errno == errno.EFBIG
    _assert_previous_kept(work_dir)


def test_atomic_write_replaces_whole_files(tmp_path):
    path = str(tmp_path / 'last_checkpoint')
    atomic_write(path, b'first')
    atomic_write(path, b'second')
    assert open(path, 'rb').read() == b'second' and os.listdir(tmp_path) == ['last_checkpoint']


def test_unreadable_checkpoints_are_described(tmp_path):
    good = str(tmp_path / 'good.pth')
    torch.save(dict(meta=dict(iter=1), state_dict=dict(w=torch.arange(50000.))), good)
    data = open(good, 'rb').read()
    truncated, corrupted, empty = (str(tmp_path / f'{name}.pth') for name in ('truncated', 'corrupted', 'empty'))
    open(truncated, 'wb').write(data[:len(data) // 2])
    with zipfile.ZipFile(good) as archive:  # flip one byte inside the tensor data
        member = next(i for i in archive.infolist() if i.filename.endswith('/data/0'))
    flipped = bytearray(data)
    flipped[member.header_offset + 200] ^= 0xFF
    open(corrupted, 'wb').write(bytes(flipped))
    open(empty, 'wb').close()
    assert checkpoint_problem(good) is None
    assert 'the checkpoint is truncated' in checkpoint_problem(truncated)
    assert checkpoint_problem(corrupted) == f'{member.filename} in the archive is corrupted (CRC mismatch)'
    assert 'the checkpoint file is empty' in checkpoint_problem(empty)
    assert 'does not exist' in checkpoint_problem(str(tmp_path / 'missing.pth'))


class RisingMetric(BaseMetric):
    """0.1, 0.2, ... at successive validations: every validation is a new best."""
    default_prefix = 'coco'

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def process(self, data_batch, data_samples) -> None:
        self.results.append(1)

    def compute_metrics(self, results) -> dict:
        self.calls += 1
        return dict(bbox_mAP=0.1 * self.calls)


class FaultBeforeBestSave(Hook):
    """Calls ``arm()`` after validation ``number``, before the checkpoint hook saves the new best."""
    priority = 'LOW'

    def __init__(self, number: int, arm) -> None:
        self.number, self.arm, self.seen = number, arm, 0

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.seen += 1
        if self.seen == self.number:
            self.arm()


def test_failed_best_save_keeps_the_previous_best(tmp_path, monkeypatch):
    """save_best: MMEngine removes the previous best before writing the new one; here it stays until then."""
    work_dir = str(tmp_path)
    full = []
    real_write = os.write
    monkeypatch.setattr(os, 'write', lambda fd, data: real_write(fd, data) if not full else (_ for _ in ()).throw(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    loader = dict(dataset=ToyDataset(4), sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2,
                  num_workers=0, collate_fn=dict(type='default_collate'))
    runner = Runner(
        model=ToyGroundingModel(), work_dir=work_dir, experiment_name=osp.basename(work_dir), default_scope='mmdet',
        train_dataloader=loader, val_dataloader=loader, val_evaluator=[RisingMetric()], val_cfg=dict(type='ValLoop'),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=4, val_interval=2),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=-1, by_epoch=False,
                                           save_best='coco/bbox_mAP', rule='greater')),
        custom_hooks=[FaultBeforeBestSave(2, lambda: full.append(True))], randomness=dict(seed=0))
    with pytest.raises(CheckpointSaveError, match='best_coco_bbox_mAP_iter_4.pth: no space left on device'):
        runner.train()
    best = osp.join(work_dir, 'best_coco_bbox_mAP_iter_2.pth')
    # iter_4.pth: save_last, before the validation
    assert sorted(glob.glob(osp.join(work_dir, '*.pth'))) == [best, osp.join(work_dir, 'iter_4.pth')]
    assert checkpoint_problem(best) is None
