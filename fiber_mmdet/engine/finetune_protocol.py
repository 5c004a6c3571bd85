"""The ODinW fine-tuning protocol: every dataset x shot setting x seed trained, its best checkpoint tested, the
test AP tabulated (FIBER / GLIP ``tools/finetune.py`` + ``tools/eval_all.py``).

A protocol config (``configs/odinw/_base_/odinw_finetune.py``) is an ordinary training config plus
``finetune_protocol = dict(datasets=[entry, ...], general_copy=[[shots, copies], ...], global_batch_size,
monitor, box_check)``; an entry names a dataset's ``data_root``, ``classes``, optional ``caption_prompt`` and its
``train`` / ``val`` / ``test`` splits (``dict(ann_file=..., img=...)``). :func:`build_run_config` turns the config
into the config of one run; :func:`run_protocol` runs them all (on one or several GPUs, or the CPU) and writes
``summary.json`` / ``summary.md``. A run is finished when its ``result.json`` exists; finished runs are never
repeated, so an interrupted protocol resumes where it stopped.

Pre-emption: on SIGTERM or SIGUSR1 the protocol passes SIGTERM on to its running children (``tools/train.py``
saves a checkpoint after the current iteration and exits with status 75), marks their runs ``PREEMPTED``, starts
no new run and exits with status 75 (:class:`~fiber_mmdet.engine.hooks.TrainingPreempted`). Run again, a marked
run resumes from its newest readable checkpoint (``tools/train.py --resume``; early stopping keeps its state
through :class:`~fiber_mmdet.engine.hooks.ResumableEarlyStoppingHook`); any other unfinished run (a crash)
starts again from the beginning.
"""
import copy
import glob
import json
import os
import os.path as osp
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from queue import Queue
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

from mmengine.config import Config

from .hooks.preemption_hook import PREEMPTED_EXIT_CODE, TrainingPreempted

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESULT_FILE = 'result.json'
PREEMPTED_MARKER = 'PREEMPTED'  # in a run's work_dir: stopped by a pre-emption signal, resume it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class RunPreempted(RuntimeError):
    """A run's process was stopped by a pre-emption signal (its checkpoint saved); it resumes next time."""


class _Children:
    """The protocol's running child processes, and whether a pre-emption signal asked them to stop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: set = set()
        self.stop = threading.Event()

    def forward(self, signum: int, frame=None) -> None:
        """Signal handler: remember the request and pass SIGTERM on to every running child."""
        self.stop.set()
        with self.lock:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)


CHILDREN = _Children()


class RunSpec(NamedTuple):
    """One fine-tuning run: dataset name, shots (0 = all images), seed, and its directory."""
    dataset: str
    shots: int
    seed: int
    work_dir: str


# ----------------------------------------------------------------------------------------------- configs
def protocol_datasets(cfg: Config) -> Dict[str, dict]:
    """``{name: entry}`` of the config's ``finetune_protocol.datasets`` (in order)."""
    protocol = cfg.get('finetune_protocol')
    if not protocol or not protocol.get('datasets'):
        raise KeyError('this config has no finetune_protocol.datasets (use a fine-tuning protocol config such as '
                       'configs/odinw/fiber_b_odinw13_finetune.py)')
    return {entry['name']: entry for entry in protocol['datasets']}


def general_copy(cfg: Config, shots: int) -> int:
    """How many times the train set is repeated per epoch for ``shots`` (GENERAL_COPY)."""
    table = {int(k): int(v) for k, v in cfg.finetune_protocol.general_copy}
    if shots not in table:
        raise KeyError(f'no GENERAL_COPY for {shots} shots in finetune_protocol.general_copy ({sorted(table)})')
    return table[shots]


def _split_set(entry: dict, split: str, pipeline: list, box_check: str, **extra) -> dict:
    files = entry[split]
    dataset = dict(type='CheckedCocoDataset', data_root=entry['data_root'], ann_file=files['ann_file'],
                   data_prefix=dict(img=files['img']), metainfo=dict(classes=tuple(entry['classes'])),
                   return_classes=True, box_check=box_check, pipeline=copy.deepcopy(pipeline), **extra)
    if entry.get('caption_prompt'):
        dataset['caption_prompt'] = copy.deepcopy(entry['caption_prompt'])
    return dataset


def build_run_config(cfg: Config, dataset: str, shots: int, seed: int, work_dir: str,
                     checkpoint: Optional[str] = None, processes: int = 1) -> Config:
    """The config of one protocol run.

    Train: ``RepeatDataset(FewShotCocoDataset(shots), times=GENERAL_COPY[shots])`` on the train split; val /
    test: the dataset's validation / test split with its prompt, COCO AP with +1 widths; the global batch
    (``finetune_protocol.global_batch_size``) divided over ``processes``; ``randomness.seed = seed``;
    ``load_from = checkpoint``. The protocol tables are left out of the result.
    """
    entry = protocol_datasets(cfg)[dataset]
    protocol = cfg.finetune_protocol
    run = copy.deepcopy(cfg)
    box_check = protocol.get('box_check', 'error')
    train = _split_set(entry, 'train', cfg.train_pipeline, box_check, shots=shots,
                       filter_cfg=dict(filter_empty_gt=True, min_size=1))
    train['type'] = 'FewShotCocoDataset'
    run.train_dataloader.dataset = dict(type='RepeatDataset', times=general_copy(cfg, shots), dataset=train)
    global_batch = int(protocol.get('global_batch_size', run.train_dataloader.batch_size))
    if global_batch % processes:
        raise ValueError(f'the global batch {global_batch} does not divide over {processes} GPUs per run')
    run.train_dataloader.batch_size = global_batch // processes
    test_pipeline = cfg.test_pipeline
    run.val_dataloader.dataset = _split_set(entry, 'val', test_pipeline, box_check, test_mode=True)
    run.test_dataloader.dataset = _split_set(entry, 'test', test_pipeline, box_check, test_mode=True)
    for split in ('val', 'test'):
        run[f'{split}_evaluator'] = dict(type='CocoPlusOneMetric',
                                         ann_file=osp.join(entry['data_root'], entry[split]['ann_file']))
    run.randomness = dict(seed=int(seed))
    for hook in run.get('custom_hooks') or []:
        if hook.get('type') == 'EarlyStoppingHook':  # its state in the checkpoints: a resumed run stops the same
            hook['type'] = 'ResumableEarlyStoppingHook'
    run.work_dir = work_dir
    if checkpoint is not None:
        run.load_from = checkpoint
    run.finetune_protocol = None
    return run


# ------------------------------------------------------------------------------------------------- runs
def plan_runs(datasets: Sequence[str], shots: Sequence[int], seeds: Sequence[int], root: str) -> List[RunSpec]:
    """Every (dataset, shots, seed) run, datasets outermost, each with its directory under ``root``."""
    return [RunSpec(d, int(k), int(s), osp.join(root, d, f'{"full" if k == 0 else f"{k}shot"}_seed{s}'))
            for d in datasets for k in shots for s in seeds]


def load_result(run: RunSpec) -> Optional[dict]:
    path = osp.join(run.work_dir, RESULT_FILE)
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def val_history(work_dir: str, monitor: str) -> List[float]:
    """The monitored validation metric of every validation of a run, in order (from MMEngine's scalars.json)."""
    history = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path, encoding='utf-8') as f:
            history += [json.loads(line)[monitor] for line in f if f'"{monitor}"' in line]
    return history


def latest_test_metrics(test_dir: str) -> dict:
    files = sorted(glob.glob(osp.join(test_dir, '*', '*.json')), key=osp.getmtime)
    if not files:
        raise FileNotFoundError(f'no test metrics under {test_dir}')
    with open(files[-1], encoding='utf-8') as f:
        return json.load(f)


def visible_devices(env: Mapping[str, str], device_count: int) -> List[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries: the caller's own list when it set one
    (indices or ``GPU-<uuid>``), else ``0 .. device_count - 1``."""
    if 'CUDA_VISIBLE_DEVICES' in env:
        return [d.strip() for d in env['CUDA_VISIBLE_DEVICES'].split(',') if d.strip()]
    return [str(i) for i in range(device_count)]


def child_environment(env: Mapping[str, str], devices: Optional[List[int]], device_count: int) -> Dict[str, str]:
    """The environment of one run's process(es): ``env`` with ``CUDA_VISIBLE_DEVICES`` narrowed to ``devices``.

    Args:
        env: The caller's environment (``os.environ``).
        devices: Positions among the caller's visible GPUs (0 = the first GPU this process sees, whatever its
            physical index); None or empty: the run uses the CPU and sees no GPU.
        device_count: GPUs this process sees (``torch.cuda.device_count()``), used when ``env`` has no
            ``CUDA_VISIBLE_DEVICES``.

    Returns:
        dict: A copy of ``env`` with ``CUDA_VISIBLE_DEVICES`` set.
    """
    child = dict(env)
    if not devices:
        child['CUDA_VISIBLE_DEVICES'] = ''
        return child
    visible = visible_devices(env, device_count)
    missing = [d for d in devices if not 0 <= d < len(visible)]
    if missing:
        source = (f'CUDA_VISIBLE_DEVICES={env["CUDA_VISIBLE_DEVICES"]!r}' if 'CUDA_VISIBLE_DEVICES' in env else
                  f'{device_count} GPU(s) found')
        raise ValueError(f'GPU(s) {missing} requested (--gpus / --gpus-per-run), but only {len(visible)} are '
                         f'visible ({source})')
    child['CUDA_VISIBLE_DEVICES'] = ','.join(visible[d] for d in devices)
    return child


def resolve_gpus(requested: Optional[int], device_count: int, env: Mapping[str, str]) -> int:
    """``--gpus``: every visible GPU when not given (0, the CPU, where there is none); a request for more GPUs
    than this process sees is an error naming ``CUDA_VISIBLE_DEVICES``."""
    if requested is None:
        return device_count
    if requested < 0 or requested > device_count:
        raise ValueError(f'--gpus {requested}: this process sees {device_count} GPU(s) (CUDA_VISIBLE_DEVICES='
                         f'{env.get("CUDA_VISIBLE_DEVICES", "<not set>")!r})')
    return requested


def _launch(script: str, args: List[str], devices: Optional[List[int]], log_file: str, port: int) -> None:
    import torch
    env = child_environment(os.environ, devices, torch.cuda.device_count())
    env['PYTHONPATH'] = os.pathsep.join([REPO_ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
    if devices and len(devices) > 1:
        cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={len(devices)}',
               f'--master_port={port}', script] + args + ['--launcher', 'pytorch']
    else:
        cmd = [sys.executable, script] + args
    with open(log_file, 'a', encoding='utf-8') as log:
        log.write('+ ' + ' '.join(cmd) + '\n')
        log.flush()
        with CHILDREN.lock:
            if CHILDREN.stop.is_set():
                raise RunPreempted(f'not started ({osp.basename(script)}): the protocol is stopping')
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
            CHILDREN.procs.add(proc)
        try:
            code = proc.wait()
        finally:
            with CHILDREN.lock:
                CHILDREN.procs.discard(proc)
    if code and (code == PREEMPTED_EXIT_CODE or CHILDREN.stop.is_set()):
        # torchrun reports its own status for workers that exited 75: the stop request tells
        raise RunPreempted(f'{osp.basename(script)} stopped by a pre-emption signal (exit status {code}); '
                           f'see {log_file}')
    if code:
        raise RuntimeError(f'{osp.basename(script)} exited with {code}; see {log_file}')


def start_or_resume(run: RunSpec) -> bool:
    """Prepare ``run.work_dir``: kept if a pre-emption stopped the run (returns True: resume it), else emptied
    (an unfinished run without a pre-emption checkpoint, e.g. a crash, starts again; returns False)."""
    if osp.isfile(osp.join(run.work_dir, PREEMPTED_MARKER)):
        return True
    if osp.isdir(run.work_dir):
        shutil.rmtree(run.work_dir)
    os.makedirs(run.work_dir)
    return False


def mark_preempted(run: RunSpec) -> None:
    """Mark ``run`` as stopped by a pre-emption signal: the next protocol call resumes it."""
    with open(osp.join(run.work_dir, PREEMPTED_MARKER), 'w', encoding='utf-8') as f:
        f.write(time.strftime('%Y-%m-%d %H:%M:%S\n'))


def execute_run(cfg: Config, run: RunSpec, checkpoint: str, devices: Optional[List[int]], port: int) -> dict:
    """Train one run, test its best checkpoint on the test split, write and return its ``result.json``.

    A run marked pre-empted resumes (``tools/train.py --resume``); another unfinished one starts again.

    Raises:
        RunPreempted: a pre-emption signal stopped it; its work_dir is marked and kept.
    """
    resume = start_or_resume(run)
    run_cfg = build_run_config(cfg, run.dataset, run.shots, run.seed, run.work_dir, checkpoint,
                               processes=max(1, len(devices or [])))
    config_file = osp.join(run.work_dir, 'config.py')
    run_cfg.dump(config_file)
    log_file = osp.join(run.work_dir, 'protocol.log')
    start = time.time()
    try:
        _launch(osp.join(REPO_ROOT, 'tools', 'train.py'),
                [config_file, '--work-dir', run.work_dir] + (['--resume'] if resume else []), devices, log_file,
                port)
        best = sorted(glob.glob(osp.join(run.work_dir, 'best_*.pth')), key=osp.getmtime)
        if not best:
            raise FileNotFoundError(f'{run.work_dir}: training wrote no best_*.pth checkpoint; see {log_file}')
        test_dir = osp.join(run.work_dir, 'test')
        _launch(osp.join(REPO_ROOT, 'tools', 'test.py'), [config_file, best[-1], '--work-dir', test_dir],
                devices[:1] if devices else None, log_file, port)
    except RunPreempted:
        mark_preempted(run)
        raise
    minutes = (time.time() - start) / 60
    monitor = cfg.finetune_protocol.monitor
    history = val_history(run.work_dir, monitor)
    result = dict(dataset=run.dataset, shots=run.shots, seed=run.seed, test=latest_test_metrics(test_dir),
                  best_checkpoint=osp.basename(best[-1]), val_history=history,
                  best_val=max(history) if history else None, validations=len(history), train_minutes=minutes)
    with open(osp.join(run.work_dir, RESULT_FILE), 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=1)
    if resume:
        os.remove(osp.join(run.work_dir, PREEMPTED_MARKER))
    return result


# -------------------------------------------------------------------------------------------------- table
def summarize(results: Sequence[dict], metric: str, datasets: Sequence[str], shots: Sequence[int]) -> dict:
    """Per dataset and shot setting the mean and (sample) standard deviation over seeds of the test ``metric``,
    and per shot setting the mean over the datasets that have results (AP in %)."""
    table: Dict[str, Dict[str, dict]] = {}
    for name in datasets:
        for k in shots:
            values = [100 * r['test'][metric] for r in results if r['dataset'] == name and r['shots'] == k]
            if values:
                table.setdefault(name, {})[_shot_key(k)] = dict(
                    mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else 0.0,
                    seeds=[r['seed'] for r in results if r['dataset'] == name and r['shots'] == k], values=values)
    average = {}
    for k in shots:
        means = [table[n][_shot_key(k)]['mean'] for n in datasets if _shot_key(k) in table.get(n, {})]
        if means:
            average[_shot_key(k)] = dict(mean=statistics.fmean(means), datasets=len(means))
    return dict(metric=metric, datasets=table, average=average)


def _shot_key(shots: int) -> str:
    return 'full' if shots == 0 else f'{shots}-shot'


def summary_markdown(summary: dict, datasets: Sequence[str], shots: Sequence[int]) -> str:
    keys = [_shot_key(k) for k in shots]
    lines = [f'test {summary["metric"]} (%), mean ± std over seeds', '',
             '| dataset | ' + ' | '.join(keys) + ' |', '|---|' + '---|' * len(keys)]
    for name in datasets:
        row = summary['datasets'].get(name, {})
        cells = [f'{row[k]["mean"]:.1f} ± {row[k]["std"]:.1f}' if k in row else '—' for k in keys]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    avg = summary['average']
    lines.append(f'| **average** ({len(datasets)} datasets) | '
                 + ' | '.join(f'**{avg[k]["mean"]:.1f}**' + ('' if avg[k]['datasets'] == len(datasets) else
                                                           f' ({avg[k]["datasets"]} datasets)')
                              if k in avg else '—' for k in keys) + ' |')
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------------------------------ driver
def run_protocol(cfg: Config, checkpoint: str, root: str, datasets: Sequence[str], shots: Sequence[int],
                 seeds: Sequence[int], gpus: int = 0, gpus_per_run: int = 1, base_port: int = 29600,
                 log=print, executor=None) -> dict:
    """Run every unfinished run (``gpus // gpus_per_run`` at a time; on the CPU one at a time), then write
    ``ROOT/summary.json`` and ``ROOT/summary.md``. Returns the summary; raises at the end if a run failed.

    On SIGTERM / SIGUSR1 (handled when called from the main thread) the running children get SIGTERM, no run
    starts, and :class:`TrainingPreempted` (``SystemExit(75)``) is raised after the summary is written.

    ``executor(cfg, run, checkpoint, devices, port) -> result`` runs one run (default :func:`execute_run`)."""
    executor = executor or execute_run
    known = protocol_datasets(cfg)
    unknown = [d for d in datasets if d not in known]
    if unknown:
        raise KeyError(f'datasets {unknown} are not in this config; it has {list(known)}')
    for k in shots:
        general_copy(cfg, k)
    if gpus and gpus % gpus_per_run:
        raise ValueError(f'--gpus {gpus} is not a multiple of --gpus-per-run {gpus_per_run}')
    runs = plan_runs(datasets, shots, seeds, root)
    todo = [r for r in runs if load_result(r) is None]
    log(f'{len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run')
    slots: 'Queue[Optional[List[int]]]' = Queue()
    if gpus:
        for i in range(gpus // gpus_per_run):
            slots.put(list(range(i * gpus_per_run, (i + 1) * gpus_per_run)))
    else:
        slots.put(None)
    failures: List[str] = []
    preempted: List[str] = []
    lock = threading.Lock()

    def work(run: RunSpec, index: int) -> None:
        devices = slots.get()
        try:
            if CHILDREN.stop.is_set():
                return  # stopping: not started, still unfinished
            result = executor(cfg, run, checkpoint, devices, base_port + index)
            with lock:
                log(f'[{index + 1}/{len(todo)}] {run.dataset} {_shot_key(run.shots)} seed {run.seed}: test '
                    f'{cfg.finetune_protocol.monitor} {result["test"][cfg.finetune_protocol.monitor]:.4f} after '
                    f'{result.get("validations", "?")} epochs ({result.get("train_minutes", 0):.1f} min)')
        except RunPreempted as error:
            with lock:
                preempted.append(run.work_dir)
                log(f'[{index + 1}/{len(todo)}] {run.dataset} {_shot_key(run.shots)} seed {run.seed} pre-empted: '
                    f'{error}')
        except Exception as error:  # noqa: BLE001  (reported below; the other runs go on)
            with lock:
                failures.append(f'{run.work_dir}: {error}')
                log(f'[{index + 1}/{len(todo)}] {run.dataset} {_shot_key(run.shots)} seed {run.seed} FAILED: {error}')
        finally:
            slots.put(devices)

    CHILDREN.stop.clear()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {signum: signal.signal(signum, CHILDREN.forward) for signum in STOP_SIGNALS}
    try:
        threads = [threading.Thread(target=work, args=(run, i)) for i, run in enumerate(todo)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    results = [r for r in (load_result(run) for run in runs) if r is not None]
    summary = summarize(results, cfg.finetune_protocol.monitor, datasets, shots)
    os.makedirs(root, exist_ok=True)
    with open(osp.join(root, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1)
    with open(osp.join(root, 'summary.md'), 'w', encoding='utf-8') as f:
        f.write(summary_markdown(summary, datasets, shots))
    if CHILDREN.stop.is_set():
        message = (f'pre-empted: {len(preempted)} run(s) stopped with a checkpoint ({", ".join(preempted)}); '
                   f'{len(runs) - len(results)} of {len(runs)} runs unfinished: run the same command again to '
                   'resume them'
                   + (f'; {len(failures)} failed:\n' + '\n'.join(failures) if failures else ''))
        log(message)
        raise TrainingPreempted(message)
    if failures:
        raise RuntimeError(f'{len(failures)} run(s) failed (rerun the same command to retry them):\n'
                           + '\n'.join(failures))
    return summary
