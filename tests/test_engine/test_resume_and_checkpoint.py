"""A resumed run equals an uninterrupted one; Runner checkpoints load weights-only; EMAHook's checkpoint format."""
import io
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer

from .conftest import RecordHook, build_toy_runner


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, registered_engine):
    """10 iterations in one go (checkpoints at 5 and 10)."""
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    record = RecordHook()
    runner = build_toy_runner(str(work_dir), 'uninterrupted', record=record)
    runner.train()
    return work_dir, record.records


def test_runner_checkpoint_needs_and_gets_safe_globals(uninterrupted):
    work_dir, _ = uninterrupted
    path = str(work_dir / 'iter_5.pth')
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:  # what torch >= 2.6 rejects by default in a Runner checkpoint
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, map_location='cpu', weights_only=True)
    finally:
        torch.serialization.add_safe_globals(registered)
    assert {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr', 'numpy.ndarray'} <= unsafe
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    assert set(checkpoint) >= {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers', 'ema_state_dict'}
    history = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(history, HistoryBuffer) and len(history.data[0]) == 5
    assert history.mean() == pytest.approx(torch.load(path, weights_only=False)['message_hub']['log_scalars']
                                           ['train/loss'].mean())
    # param groups keep the weight-decay schedule's starting values
    assert {g['initial_weight_decay'] for g in checkpoint['optimizer']['param_groups']} == {0.0, 0.1}


def test_getattr_stays_restricted(registered_engine):
    class Payload:

        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    buffer = io.BytesIO()
    torch.save(dict(payload=Payload()), buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer statistics methods'):
        torch.load(buffer, weights_only=True)


def test_resumed_run_matches_uninterrupted(uninterrupted, tmp_path):
    work_dir, expected = uninterrupted
    record = RecordHook()
    runner = build_toy_runner(str(tmp_path), 'resumed', resume_from=str(work_dir / 'iter_5.pth'), record=record)
    runner.train()
    assert sorted(record.records) == list(range(5, 10))
    for iteration, values in record.records.items():
        # exactly the same losses, learning rates and weight decays
        assert values == expected[iteration], iteration

    full = torch.load(str(work_dir / 'iter_10.pth'), weights_only=True)
    resumed = torch.load(str(tmp_path / 'iter_10.pth'), weights_only=True)
    for key in ('state_dict', 'ema_state_dict'):
        assert full[key].keys() == resumed[key].keys()
        for name, value in full[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)
    assert full['optimizer']['param_groups'] == resumed['optimizer']['param_groups']


def test_ema_checkpoint_format(uninterrupted):
    """MMEngine's EMAHook saves the EMA weights as ``state_dict`` and the raw weights in ``ema_state_dict``."""
    work_dir, _ = uninterrupted
    iter5 = torch.load(str(work_dir / 'iter_5.pth'), weights_only=True)
    iter10 = torch.load(str(work_dir / 'iter_10.pth'), weights_only=True)
    raw5 = {k[len('module.'):]: v for k, v in iter5['ema_state_dict'].items() if k.startswith('module.')}
    raw10 = {k[len('module.'):]: v for k, v in iter10['ema_state_dict'].items() if k.startswith('module.')}
    assert raw10.keys() == iter10['state_dict'].keys()
    assert int(iter10['ema_state_dict']['steps']) == 10
    name = 'bbox_head.weight'
    assert not torch.equal(iter10['state_dict'][name], raw10[name])
    # momentum 0.001 (FIBER's decay 0.999): after 10 updates the average is still close to the early weights
    assert (iter10['state_dict'][name] - iter5['state_dict'][name]).abs().max() < \
        0.05 * (raw10[name] - raw5[name]).abs().max()
    # integer buffers are copied, not averaged
    assert torch.equal(iter10['state_dict']['bbox_head.calls'], raw10['bbox_head.calls'])
