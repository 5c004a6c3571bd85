"""The ODinW protocol under pre-emption: a SIGTERM to the protocol reaches its running training (a real
tools/train.py child on the tool tests' tiny ATSS), which saves a checkpoint and stops; the protocol marks the run,
starts no other and exits with status 75; called again it resumes that run from its checkpoint, and the early
stopping of the run configs keeps its state in checkpoints."""
import json
import os
import os.path as osp
import signal
import threading
import time

import pytest
from mmengine.config import Config

from fiber_mmdet.engine.finetune_protocol import (PREEMPTED_MARKER, REPO_ROOT, RESULT_FILE, RunPreempted, _launch,
                                                  build_run_config, mark_preempted, run_protocol, start_or_resume)
from fiber_mmdet.engine.hooks import TrainingPreempted
from ..test_reliability.preemption_helpers import tiny_configs


def test_run_configs_keep_early_stopping_state(repo_root):
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'odinw', 'fiber_b_odinw13_finetune.py'))
    run = build_run_config(cfg, 'Aquarium', 1, 3, 'work_dirs/x')
    assert [h['type'] for h in run.custom_hooks] == ['ResumableEarlyStoppingHook']


def test_sigterm_reaches_the_training_and_the_run_resumes(repo_root, tmp_path, monkeypatch):
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'odinw', 'fiber_b_odinw13_finetune.py'))
    config, waiting = tiny_configs(tmp_path, max_iters=4, wait_after=3)
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))  # the waiting hook of the first training
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    started = []

    def executor(cfg, run, checkpoint, devices, port):
        """execute_run's training step, on the tiny config: start or resume, mark when pre-empted. Seed 30 stands
        for the runs waiting their turn: it records its start and finishes without training."""
        resume = start_or_resume(run)
        started.append((run.seed, resume))
        log = osp.join(run.work_dir, 'protocol.log')
        if run.seed == 3:
            try:
                _launch(osp.join(REPO_ROOT, 'tools', 'train.py'),
                        [str(waiting if not resume else config), '--work-dir', run.work_dir]
                        + (['--resume'] if resume else []), None, log, port)
            except RunPreempted:
                mark_preempted(run)
                raise
        result = dict(dataset=run.dataset, shots=run.shots, seed=run.seed, test={'coco/bbox_mAP': 0.5})
        json.dump(result, open(osp.join(run.work_dir, RESULT_FILE), 'w'))
        return result

    first = osp.join(str(tmp_path), 'runs', 'Aquarium', '1shot_seed3')

    def preempt_when_ready() -> None:
        deadline = time.monotonic() + 240
        while not osp.exists(osp.join(first, 'ready')) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler signals the protocol process

    sender = threading.Thread(target=preempt_when_ready, daemon=True)
    sender.start()
    with pytest.raises(TrainingPreempted) as raised:
        run_protocol(cfg, None, str(tmp_path / 'runs'), ['Aquarium'], [1], [3, 30], executor=executor)
    sender.join()
    assert raised.value.code == 75 and started == [(3, False)]  # the second run never started
    assert str(raised.value).startswith(f'pre-empted: 1 run(s) stopped with a checkpoint ({first}); 2 of 2 runs '
                                        'unfinished')
    log = open(osp.join(first, 'protocol.log')).read()
    assert 'SIGTERM: training stopped after iteration 3' in log and osp.isfile(osp.join(first, PREEMPTED_MARKER))
    assert open(osp.join(first, 'last_checkpoint')).read() == osp.join(first, 'iter_3.pth')

    started.clear()
    summary = run_protocol(cfg, None, str(tmp_path / 'runs'), ['Aquarium'], [1], [3, 30], executor=executor)
    assert started == [(3, True), (30, False)] and summary['datasets']['Aquarium']['1-shot']['seeds'] == [3, 30]
    log = open(osp.join(first, 'protocol.log')).read()
    assert f'resuming from {osp.join(first, "iter_3.pth")}' in log and 'resumed epoch: 0, iter: 3' in log
