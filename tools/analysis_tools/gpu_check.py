"""One short check of fiber_mmdet on a GPU, self-contained in the repository.

Time on one H100, an estimate: the Python and DDP steps are nearly all imports and Runner set-up with tiny
models (41 s of CPU time on two CPU cores): ~1-1.5 min; six ``benchmark.py`` runs at ~25-35 s
each (start-up and building FIBER-B ~15 s, then 6 calls per phase, one FLOP count, a GEMM) and ~1 min of
prompt timing: ~4 min. About 5.5 minutes in all, under 8, without the ``onnx`` step; that one exports FIBER-B
(~1.5-3.5 min of CPU on 2 cores per graph, two graphs, fewer minutes on a GPU machine's cores) and builds TensorRT
engines (minutes), an estimate of 4-8 more minutes: ``--steps`` without ``onnx`` leaves it out.

Usage (from anywhere; ``gpu_check.sh`` is the same with PYTHONPATH set):
    python tools/analysis_tools/gpu_check.py [--device cuda] [--out DIR] [--steps a,b,...] [--dry-run]

Steps (``--steps``, default all, in this order; every result is one line of ``OUT/summary.txt``):

* ``env``: versions, the GPU, mmcv's CUDA ops; a FAIL names what is missing and ends the check.
* ``tf32``: TF32 switched off for the parity steps, and shown off (float32 matmul / convolution vs float64).
* ``dcn``: the head's modulated deformable convolution (mmcv's CUDA kernel) vs the float64 CPU one, forward and
  gradients; its FLOPs counted once by ``benchmark.py``'s counter.
* ``parity``: the stored CPU float32 outputs of a small FIBER (``fixtures/gpu_parity``, see ``gpu_parity.py``)
  reproduced in float32: features, text, head outputs, losses, detections. The suite ties the CPU to the
  original FIBER, so this ties the GPU to it.
* ``onnx``: FIBER-B (random weights) exported to ONNX and run by ONNX Runtime's CUDA and TensorRT execution
  providers (TensorRT in fp32 and fp16) against PyTorch on the same GPU (fp32, and float16 autocast for the fp16
  engines), at the first of ``--sizes``: seconds, ratio, detections paired (``benchmark_onnx.py``). Needs
  ``onnxruntime-gpu`` (and TensorRT for its lines); without them the lines are SKIPs.
* ``autocast``: ``model.predict`` under fp16 and bf16 autocast vs float32, with real candidates (low score
  threshold): boxes present and finite, the float32 detections found again.
* ``train``: the toy model (deformable head) trained 6 iterations (CPU: 3) by MMEngine's Runner with AMP
  (fp16, bf16: NonFiniteSkipAmpOptimWrapper, dynamic loss scale), NonFiniteGuardHook and an EMA hook.
* ``ddp``: 2 processes (torchrun) training the toy model 6 iterations with MMDistributedDataParallel: NCCL
  with 2+ GPUs; with one GPU both ranks share it over gloo (NCCL refuses two ranks on one GPU), which checks
  the DDP code paths, not NCCL; the weights must be equal across ranks afterwards.
* ``bench``: FIBER-B timings, memory and FLOP rate, ``benchmark.py`` at each ``--sizes`` x ``--amps``.
* ``prompts``: the LVIS-style timing (1203 names, 40 per prompt) of ``benchmark_prompts.py``.
* ``compile``: ``torch.compile`` (inductor) against eager mode, FIBER-B at the first of ``--sizes``, evaluation
  and training step (``benchmark_compile.py``): graph breaks, compile time, both timings, outputs compared, and
  the frames compiled again at two other sizes. Compiling FIBER-B takes minutes: a step of its own, last.

Output (``--out``, default ``$OUT`` or ``work_dirs/gpu_check``), at most 3 files: ``summary.txt`` (a few KiB:
a header, then ``PASS|FAIL|SKIP name: key figures`` per line, rewritten after every step so that a cut-short
run keeps what it did), ``check.log`` (every step's full output) and ``bench.json`` (the benchmark figures).
Scratch files go to ``--work-dir`` (default: a temporary folder). Exit status 1 if a line FAILed.
"""
import argparse
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from typing import Callable, List, Optional

HERE = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, REPO_ROOT)
STEPS = ('env', 'tf32', 'dcn', 'parity', 'onnx', 'autocast', 'train', 'ddp', 'bench', 'prompts', 'compile')
# the ONNX step's runs: (label, providers, precision); the first exports FIBER-B, the others reuse its graphs
ONNX_RUNS = (('CUDA', ['CUDAExecutionProvider', 'CPUExecutionProvider'], 'fp32'),
             ('TensorRT', ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider'], 'fp32'),
             ('TensorRT-fp16', ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider'], 'fp16'))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='fiber_mmdet GPU check', formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--device', default='cuda', help='cuda, cuda:N, or cpu (the suite runs the steps on a CPU)')
    p.add_argument('--out', default=os.environ.get('OUT') or 'work_dirs/gpu_check',
                   help='summary.txt, check.log, bench.json (default: $OUT, else work_dirs/gpu_check)')
    p.add_argument('--work-dir', default=None, help='scratch folder (default: a temporary one, removed)')
    p.add_argument('--steps', default=','.join(STEPS), help=f'comma-separated, from {",".join(STEPS)}')
    p.add_argument('--config', default='configs/_base_/models/fiber_b.py', help='model of the timings')
    p.add_argument('--sizes', default='512x512,800x1333', help='HxW of the timings, comma-separated')
    p.add_argument('--amps', default='none,bf16,fp16', help='autocast of the timings: none, bf16, fp16')
    p.add_argument('--repeat', type=int, default=5, help='timed calls per benchmark phase')
    p.add_argument('--step-timeout', type=int, default=240, help='seconds for each subprocess step')
    p.add_argument('--dry-run', action='store_true', help='list the steps and commands, run nothing')
    args = p.parse_args(argv)
    args.steps = [s for s in args.steps.split(',') if s]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        p.error(f'unknown step(s) {unknown}; choose from {STEPS}')
    args.sizes = [tuple(int(v) for v in s.split('x')) for s in args.sizes.split(',') if s]
    args.amps = [a for a in args.amps.split(',') if a]
    return args


class Summary:
    """``summary.txt``: header lines, then one line per result; rewritten whenever a line is added."""

    def __init__(self, out: str, header: List[str]) -> None:
        self.path = osp.join(out, 'summary.txt')
        self.header = header
        self.lines: List[str] = []
        self.write()

    def add(self, line) -> None:
        self.lines.append(str(line)[:400])  # one line each, whatever a step's exception says
        print(str(line), flush=True)
        self.write()

    def statuses(self) -> List[str]:
        return [l.split(' ', 1)[0] for l in self.lines]

    def write(self, footer: str = '') -> None:
        with open(self.path, 'w') as f:
            f.write('\n'.join(self.header + self.lines + ([footer] if footer else [])) + '\n')


def subprocess_env() -> dict:
    """The environment of every command: the repository on PYTHONPATH, unbuffered output."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO_ROOT, env.get('PYTHONPATH', '')) if p)
    return env


def run_command(cmd: List[str], log, timeout: int) -> subprocess.CompletedProcess:
    """Run ``cmd`` from the repository root; its output goes to ``log`` and is returned."""
    log.write(f'\n$ {shlex.join(cmd)}\n')
    log.flush()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
        log.write(out + f'\nTIMEOUT after {timeout} s\n')
        return subprocess.CompletedProcess(cmd, 124, out + f'\nTIMEOUT after {timeout} s', '')
    log.write(proc.stdout + proc.stderr)
    log.flush()
    return proc


def bench_commands(args: argparse.Namespace, work: str) -> List[List[str]]:
    tokenizer = osp.join(HERE, 'fixtures', 'gpu_parity', 'tokenizer')
    cmds = []
    for h, w in args.sizes:
        for amp in args.amps:
            cmds.append([sys.executable, osp.join(HERE, 'benchmark.py'), args.config, '--device', args.device,
                         '--size', str(h), str(w), '--amp', amp, '--repeat', str(args.repeat), '--boxes', '5',
                         '--tokenizer', tokenizer, '--json', osp.join(work, f'bench_{h}x{w}_{amp}.json')])
    return cmds


def prompts_command(args: argparse.Namespace) -> List[str]:
    return [sys.executable, osp.join(HERE, 'benchmark_prompts.py'), args.config, '--device', args.device,
            '--classes', '1203', '--chunk', '40', '--size', '800', '1333', '--images', '2', '--plain-images', '1']


def onnx_commands(args: argparse.Namespace, work: str) -> List[List[str]]:
    tokenizer = osp.join(HERE, 'fixtures', 'gpu_parity', 'tokenizer')
    h, w = args.sizes[0]
    cmds = []
    for i, (label, providers, precision) in enumerate(ONNX_RUNS):
        cmds.append([sys.executable, osp.join(HERE, 'benchmark_onnx.py'), '--provider-label', label, '--precision',
                     precision] + (['--reuse-exports'] if i else []) + [
                     '--device', args.device, '--sizes', f'{h}x{w}', '--providers', *providers, '--repeat', '3',
                     '--json', osp.join(work, f'onnx_{label}.json'), '--work-dir', osp.join(work, 'onnx'),
                     '--tokenizer', tokenizer])
    return cmds


def onnx_line(result: dict, label: str) -> str:
    """One summary line of a ``benchmark_onnx.py`` result: float32 must pair every detection with PyTorch's;
    float16 engines are compared with PyTorch under float16 autocast and only need finite detections."""
    cells, ok = [], True
    for size, rows in result['sizes'].items():
        torch_s = rows['pytorch']['seconds']
        for kind in ('onnx_free_text', 'onnx_fixed_vocabulary'):
            row = rows.get(kind)
            if row is None:
                continue
            strict = result.get('precision', 'fp32') == 'fp32'
            ok &= bool(row['parity']) if strict else row['detections'] > 0
            cells.append(f'{size} {kind[5:]} {row["seconds"] * 1e3:.1f} ms ({row["vs_pytorch"]:.2f}x PyTorch '
                         f'{torch_s * 1e3:.1f} ms), parity {row["parity"]} (boxes {row["max_box_diff_px"]:.1e} px, '
                         f'scores {row["max_score_diff"]:.1e})')
    return f'{"PASS" if ok else "FAIL"} onnx_{label}: ' + '; '.join(cells)


def onnx_step(args: argparse.Namespace, work: str, log) -> List[str]:
    try:
        import onnxruntime as ort
        available = ort.get_available_providers()
    except ImportError:
        available = []
    lines = []
    for (label, providers, _), cmd in zip(ONNX_RUNS, onnx_commands(args, work)):
        if args.device.startswith('cuda') and providers[0] not in available:
            lines.append(f'SKIP onnx_{label}: {providers[0]} not in onnxruntime ({available or "not installed"}); '
                         'pip install onnxruntime-gpu (and TensorRT for its provider)')
            continue
        proc = run_command(cmd, log, max(args.step_timeout, 600))
        if proc.returncode == 0 and osp.isfile(cmd[cmd.index('--json') + 1]):
            with open(cmd[cmd.index('--json') + 1]) as f:
                lines.append(onnx_line(json.load(f), label))
        else:
            lines.append(f'FAIL onnx_{label}: exit {proc.returncode}: {(proc.stdout + proc.stderr)[-300:]}')
    return lines


def compile_command(args: argparse.Namespace, work: str) -> List[str]:
    h, w = args.sizes[0]
    tokenizer = osp.join(HERE, 'fixtures', 'gpu_parity', 'tokenizer')
    return [sys.executable, osp.join(HERE, 'benchmark_compile.py'), args.config, '--device', args.device,
            '--size', str(h), str(w), '--repeat', str(args.repeat), '--tokenizer', tokenizer,
            '--json', osp.join(work, 'compile.json')]


def compile_line(result: dict) -> str:
    """One summary line of a ``benchmark_compile.py`` result: PASS when the outputs match eager mode's."""
    cells, ok = [], True
    for phase, r in result['phases'].items():
        if phase == 'train':
            same = r['max_loss_diff'] < 1e-3
            outputs = f'loss diff {r["max_loss_diff"]:.1e}'
        else:
            same = r['same_labels'] and r['max_box_diff'] < 1e-2
            outputs = f'labels {"equal" if r["same_labels"] else "differ"}, box diff {r["max_box_diff"]:.1e} px'
        ok = ok and same
        recompiles = '/'.join(str(x['frames_compiled']) for x in r['recompiles'])
        cells.append(f'{phase} {r["graph_breaks"]} breaks, compile {r["compile_seconds"]:.0f} s, '
                     f'{r["eager_seconds"] * 1e3:.1f} -> {r["compiled_seconds"] * 1e3:.1f} ms '
                     f'({r["speedup"]:.2f}x), {outputs}, frames at other sizes {recompiles}')
    return f'{"PASS" if ok else "FAIL"} compile: ' + '; '.join(cells)


def compile_step(args: argparse.Namespace, work: str, log) -> List[str]:
    cmd = compile_command(args, work)
    proc = run_command(cmd, log, args.step_timeout)
    if proc.returncode != 0 or not osp.isfile(cmd[-1]):
        return [f'FAIL compile: exit {proc.returncode}: {(proc.stdout + proc.stderr)[-300:]}']
    with open(cmd[-1]) as f:
        return [compile_line(json.load(f))]


def ddp_command(args: argparse.Namespace, work: str, data_root: str, result: str, iters: int) -> List[str]:
    amp = ['--amp', 'fp16'] if args.device.startswith('cuda') else []
    # --standalone: a local rendezvous on a port torchrun picks itself, so no port is chosen here and raced for
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
            osp.join(HERE, 'gpu_check_steps.py'), 'ddp-worker',
            '--device', args.device, '--data-root', data_root, '--work-dir', osp.join(work, 'ddp'),
            '--result', result, '--iters', str(iters)] + amp


def bench_line(result: dict, tag: str) -> str:
    cells = []
    for phase, r in result['phases'].items():
        mem = r.get('peak_mib', r.get('peak_rss_mib', 0))
        rate = f', {r["gflop_per_s"]:.0f} GFLOP/s = {r["of_gemm"]:.2f} of GEMM' if 'gflop' in r else ''
        cells.append(f'{phase} {r["seconds"] * 1e3:.1f} ms, {mem:.0f} MiB{rate}')
    return f'PASS bench_{tag}: ' + '; '.join(cells)


def in_process(step: Callable, log, *args) -> List[str]:
    """Run a Python step with its output in the log; an exception is this step's FAIL line."""
    try:
        with redirect_stdout(log), redirect_stderr(log):
            return [str(l) for l in step(*args)]
    except Exception as e:  # noqa: BLE001 - one step's failure must not stop the others
        log.write(traceback.format_exc())
        return [f'FAIL {step.__name__.replace("step_", "")}: {type(e).__name__}: {str(e)[:300]}']


def header(args: argparse.Namespace) -> List[str]:
    try:
        git = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO_ROOT, capture_output=True,
                             text=True).stdout.strip() or 'not a git checkout'
    except OSError:
        git = 'git not found'
    return [f'fiber_mmdet GPU check {time.strftime("%Y-%m-%d %H:%M:%S")} git {git}: device {args.device}, '
            f'steps {",".join(args.steps)}' + (' (DRY RUN)' if args.dry_run else '')]


def dry_run(args: argparse.Namespace, summary: Summary) -> int:
    work = args.work_dir or '<scratch>'
    descriptions = dict(
        env='versions, GPU, mmcv CUDA ops', tf32='TF32 off, float32 matmul/conv vs float64',
        dcn='deformable convolution vs float64 CPU, FLOP count', parity='stored fixture fixtures/gpu_parity in float32',
        autocast='predict under fp16 and bf16 autocast vs float32',
        train='Runner toy training, AMP fp16/bf16, NonFiniteGuardHook, EMA')
    for step in args.steps:
        if step in descriptions:
            summary.add(f'DRY-RUN python step {step}: {descriptions[step]}')
        elif step == 'ddp':
            iters = 6 if args.device.startswith('cuda') else 3  # gpu_check_steps.train_iters, without torch
            summary.add('DRY-RUN ' + shlex.join(ddp_command(args, work, f'{work}/toy_shapes/', f'{work}/ddp.json',
                                                            iters)))
        elif step == 'bench':
            for cmd in bench_commands(args, work):
                summary.add('DRY-RUN ' + shlex.join(cmd))
        elif step == 'prompts':
            summary.add('DRY-RUN ' + shlex.join(prompts_command(args)))
        elif step == 'onnx':
            for cmd in onnx_commands(args, work):
                summary.add('DRY-RUN ' + shlex.join(cmd))
        elif step == 'compile':
            summary.add('DRY-RUN ' + shlex.join(compile_command(args, work)))
    summary.write('RESULT: dry run, nothing was run')
    return 0


def ddp_step(args: argparse.Namespace, work: str, log) -> List[str]:
    import gpu_check_steps as steps
    result = osp.join(work, 'ddp.json')
    with redirect_stdout(log), redirect_stderr(log):
        data_root = steps.toy_data(work)
    iters = steps.train_iters(args.device)
    proc = run_command(ddp_command(args, work, data_root, result, iters), log, args.step_timeout)
    return [str(steps.ddp_line(result, iters, proc.returncode, proc.stdout + proc.stderr))]


def bench_step(args: argparse.Namespace, work: str, log) -> List[str]:
    lines, merged = [], {}
    for cmd in bench_commands(args, work):
        tag = osp.basename(cmd[-1])[len('bench_'):-len('.json')]
        proc = run_command(cmd, log, args.step_timeout)
        if proc.returncode == 0 and osp.isfile(cmd[-1]):
            with open(cmd[-1]) as f:
                merged[tag] = json.load(f)
            lines.append(bench_line(merged[tag], tag))
        else:
            lines.append(f'FAIL bench_{tag}: exit {proc.returncode}: {(proc.stdout + proc.stderr)[-300:]}')
        with open(osp.join(args.out, 'bench.json'), 'w') as f:  # after each run: a cut-short check keeps them
            json.dump(merged, f, indent=1)
    return lines


def prompts_line(stdout: str) -> str:
    """The key figures of ``benchmark_prompts.py``'s output: seconds per image of each setting and path, the
    largest peak memory, and whether the paths' detections agreed."""
    import re
    pattern = re.compile(r'^\[(\w+): (\d+) names, (\d+) prompt.*?\] (\w+)\s*:\s*([\d.]+) s per image.*'
                         r'peak memory (\d+) MiB')
    times, peaks = [], []
    for line in stdout.splitlines():
        m = pattern.match(line)
        if m:
            times.append(f'{m[1]}({m[3]} prompts)/{m[4]} {m[5]} s')
            peaks.append(int(m[6]))
    agree = [l.split('detections agree: ')[1].split()[0] for l in stdout.splitlines() if 'detections agree' in l]
    return (f'PASS prompts: {", ".join(times)} per image; peak {max(peaks, default=0)} MiB; paths agree '
            f'{agree.count("True")}/{len(agree)}')


def prompts_step(args: argparse.Namespace, work: str, log) -> List[str]:
    proc = run_command(prompts_command(args), log, args.step_timeout)
    if proc.returncode != 0:
        return [f'FAIL prompts: exit {proc.returncode}: {(proc.stdout + proc.stderr)[-300:]}']
    return [prompts_line(proc.stdout)]


def run_steps(args: argparse.Namespace, summary: Summary, work: str, log) -> None:
    """Each step in turn, its lines added to the summary as soon as it ends; an exception is its FAIL line."""
    import gpu_check_steps as steps
    from benchmark import select_device
    device = args.device
    python_steps = dict(env=(steps.step_env, device), tf32=(steps.step_tf32, device),
                        dcn=(steps.step_dcn, device), parity=(steps.step_parity, device),
                        autocast=(steps.step_autocast_predict, device), train=(steps.step_train, device, work))
    command_steps = dict(onnx=onnx_step, ddp=ddp_step, bench=bench_step, prompts=prompts_step, compile=compile_step)
    select_device(device)
    for name in args.steps:
        start = time.perf_counter()
        log.write(f'\n===== step {name} =====\n')
        log.flush()
        if name in python_steps:
            lines = in_process(*python_steps[name][:1], log, *python_steps[name][1:])
        else:
            try:
                lines = command_steps[name](args, work, log)
            except Exception as e:  # noqa: BLE001 - one step's failure must not stop the others
                log.write(traceback.format_exc())
                lines = [f'FAIL {name}: {type(e).__name__}: {str(e)[:300]}']
        for line in lines:
            summary.add(line)
        log.write(f'step {name}: {time.perf_counter() - start:.1f} s\n')
        log.flush()
        if name == 'env' and lines and lines[0].startswith('FAIL'):
            summary.add('SKIP other steps: the environment check failed')
            return


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    summary = Summary(args.out, header(args))
    if args.dry_run:
        return dry_run(args, summary)
    os.environ['PYTHONPATH'] = subprocess_env()['PYTHONPATH']
    start = time.perf_counter()
    tmp = None if args.work_dir else tempfile.TemporaryDirectory(prefix='fiber_gpu_check_')
    work = args.work_dir or tmp.name
    os.makedirs(work, exist_ok=True)
    with open(osp.join(args.out, 'check.log'), 'w') as log:
        run_steps(args, summary, work, log)
    statuses = summary.statuses()
    failed = statuses.count('FAIL')
    summary.write(f'RESULT: {"FAIL" if failed else "PASS"} ({statuses.count("PASS")} passed, {failed} failed, '
                  f'{statuses.count("SKIP")} skipped) in {time.perf_counter() - start:.0f} s')
    print(open(summary.path).read().splitlines()[-1])
    if tmp is not None:
        tmp.cleanup()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
