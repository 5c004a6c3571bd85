"""tools/analysis_tools/gpu_check.sh / gpu_check.py: the dry run lists every step and command; the Python
steps run for real on the CPU (the toy and fixture models, DDP over gloo) and write the summary."""
import os
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT, TOOLS, load_tool

SCRIPT = str(TOOLS / 'analysis_tools' / 'gpu_check.sh')
DRIVER = str(TOOLS / 'analysis_tools' / 'gpu_check.py')


def _env(**extra):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', **extra)
    env.pop('PYTHONPATH', None)  # the script must set it itself
    return env


def test_syntax():
    assert subprocess.run(['bash', '-n', SCRIPT]).returncode == 0


def test_dry_run_lists_steps_and_commands(tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run(['bash', SCRIPT, '--dry-run'], capture_output=True, text=True, timeout=60,
                          env=_env(OUT=str(out)), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / 'summary.txt').read_text().splitlines()
    assert summary[0].startswith('fiber_mmdet GPU check') and 'device cuda' in summary[0]
    assert summary[-1] == 'RESULT: dry run, nothing was run'
    lines = [l for l in summary if l.startswith('DRY-RUN ')]
    steps = [l.split()[3].rstrip(':') for l in lines if l.startswith('DRY-RUN python step ')]
    assert steps == ['env', 'tf32', 'dcn', 'parity', 'autocast', 'train']
    ddp = [l for l in lines if 'torch.distributed.run' in l]
    assert len(ddp) == 1 and '--nproc_per_node 2' in ddp[0] and 'ddp-worker --device cuda' in ddp[0]
    assert '--iters 6' in ddp[0] and ddp[0].endswith('--amp fp16')
    bench = [l for l in lines if 'benchmark.py' in l]
    assert {(l.split('--size ')[1].split(' --')[0], l.split('--amp ')[1].split()[0]) for l in bench} == {
        (size, amp) for size in ('512 512', '800 1333') for amp in ('none', 'bf16', 'fp16')}
    assert len(bench) == 6 and all('--device cuda' in l and 'fixtures/gpu_parity/tokenizer' in l for l in bench)
    prompts = [l for l in lines if 'benchmark_prompts.py' in l]
    assert len(prompts) == 1 and '--classes 1203 --chunk 40' in prompts[0]
    onnx = [l for l in lines if 'benchmark_onnx.py' in l]
    assert [l.split('--provider-label ')[1].split()[0] for l in onnx] == ['CUDA', 'TensorRT', 'TensorRT-fp16']
    assert ['--reuse-exports' in l for l in onnx] == [False, True, True]
    assert all('--device cuda --sizes 512x512' in l for l in onnx) and '--precision fp16' in onnx[2]
    compiled = [l for l in lines if 'benchmark_compile.py' in l]
    assert len(compiled) == 1 and '--device cuda --size 512 512' in compiled[0]
    assert sorted(os.listdir(out)) == ['summary.txt']


def test_unknown_step_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, DRIVER, '--steps', 'parity,tensorrt', '--out', str(tmp_path), '--dry-run'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown step(s) ['tensorrt']" in proc.stderr


def test_ddp_backend_choice():
    steps = load_tool('analysis_tools/gpu_check_steps.py')
    assert steps.ddp_backend('cuda', 2, 2) == 'nccl'
    assert steps.ddp_backend('cuda:0', 2, 1) == 'gloo'  # NCCL refuses two ranks on one GPU
    assert steps.ddp_backend('cpu', 2, 0) == 'gloo'


def test_a_failing_step_is_a_fail_line_and_the_others_run(tmp_path):
    driver = load_tool('analysis_tools/gpu_check.py')

    def step_broken(device):
        raise RuntimeError('kernel exploded')

    with open(tmp_path / 'log', 'w') as log:
        lines = driver.in_process(step_broken, log, 'cpu')
    assert lines == ['FAIL broken: RuntimeError: kernel exploded']
    assert 'Traceback' in (tmp_path / 'log').read_text()


@pytest.fixture(scope='module')
def cpu_run(tmp_path_factory):
    """Every Python step of the check, and the DDP step, run on the CPU once."""
    out = tmp_path_factory.mktemp('gpu_check_out')
    work = tmp_path_factory.mktemp('gpu_check_work')
    proc = subprocess.run(['bash', SCRIPT, '--device', 'cpu', '--steps', 'env,tf32,dcn,parity,autocast,train,ddp',
                           '--out', str(out), '--work-dir', str(work)], capture_output=True, text=True, timeout=400,
                          env=_env(), cwd=str(REPO_ROOT))
    summary = (out / 'summary.txt').read_text()
    return proc, summary, out


def test_cpu_run_passes_every_step(cpu_run):
    proc, summary, out = cpu_run
    assert proc.returncode == 0, summary + proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = summary.splitlines()
    status = {l.split(' ')[1].rstrip(':'): l.split(' ')[0] for l in lines[1:-1]}
    assert status == {'env': 'PASS', 'tf32_off': 'PASS', 'deform_conv': 'PASS', 'parity_fp32': 'PASS',
                      'predict_fp16': 'PASS', 'predict_bf16': 'PASS', 'train_amp_fp16': 'SKIP',
                      'train_amp_bf16': 'SKIP', 'train_fp32': 'PASS', 'ddp_2proc_gloo': 'PASS'}, summary
    assert lines[-1].startswith('RESULT: PASS (8 passed, 0 failed, 2 skipped)')
    assert len(summary.encode()) < 4096 and sorted(os.listdir(out)) == ['check.log', 'summary.txt']


def test_cpu_run_key_figures(cpu_run):
    _, summary, _ = cpu_run
    line = {l.split(' ')[1].rstrip(':'): l for l in summary.splitlines()[1:-1]}
    assert 'FLOPs counted 2211840 = dense 2211840: True' in line['deform_conv']  # 2 x (2·16·12·20) x 16 x 9
    parity = line['parity_fp32']
    assert 'detections 18 vs 18, 0 unmatched' in parity and '; 32 vs 32, 0 unmatched' in parity
    assert 'skipped steps 0 (guard hook logged non-finite [], scaler back-offs [])' in line['train_fp32']
    assert 'EMA steps 3, finite True' in line['train_fp32']
    assert '2 ranks on CPU, 3 iters' in line['ddp_2proc_gloo'] and 'max diff 0.0e+00' in line['ddp_2proc_gloo']


def test_summary_lines_of_the_timings():
    """The timing steps' lines hold their key figures (outputs as benchmark_prompts.py and benchmark.py write
    them; the runs themselves are tested in test_benchmark.py and need a GPU at the check's sizes)."""
    driver = load_tool('analysis_tools/gpu_check.py')
    stdout = '\n'.join([
        'config: configs/_base_/models/fiber_b.py  params: 252,000,000  image: 800x1333  device: cuda',
        '[many: 1203 names, 31 prompt(s)] plain  :     4.10 s per image (4.10; process CPU 4.0 s)  '
        'peak memory 9000 MiB',
        '[many: 1203 names, 31 prompt(s)] cached :     1.20 s per image (1.2, 1.2; process CPU 1.1 s)  '
        'peak memory 9100 MiB',
        '[many] plain / cached = 3.42x; detections agree: True (sorted scores differ by at most 0.0e+00)',
        '[single: 40 names, 1 prompt(s)] plain  :     0.15 s per image (0.15; process CPU 0.1 s)  '
        'peak memory 8000 MiB',
    ])
    assert driver.prompts_line(stdout) == ('PASS prompts: many(31 prompts)/plain 4.10 s, many(31 prompts)/cached '
                                           '1.20 s, single(1 prompts)/plain 0.15 s per image; peak 9100 MiB; paths '
                                           'agree 1/1')
    bench = dict(phases=dict(eval=dict(seconds=0.0421, peak_mib=2048.4, gflop=307.5, gflop_per_s=7304.0,
                                       of_gemm=0.012),
                             train=dict(seconds=0.25, peak_mib=9000.0)))
    assert driver.bench_line(bench, '512x512_bf16') == (
        'PASS bench_512x512_bf16: eval 42.1 ms, 2048 MiB, 7304 GFLOP/s = 0.01 of GEMM; train 250.0 ms, 9000 MiB')


def test_summary_line_of_the_compile_step():
    """PASS when the compiled outputs are eager mode's, with the graph breaks, compile time, both timings and the
    recompiles at other sizes; FAIL when the labels differ."""
    driver = load_tool('analysis_tools/gpu_check.py')
    train = dict(graph_breaks=1, compile_seconds=95.2, eager_seconds=0.310, compiled_seconds=0.205, speedup=1.51,
                 max_loss_diff=2e-6, recompiles=[dict(frames_compiled=3), dict(frames_compiled=0)])
    evaluation = dict(graph_breaks=4, compile_seconds=60.0, eager_seconds=0.050, compiled_seconds=0.040,
                      speedup=1.25, same_labels=True, max_box_diff=3e-4, recompiles=[dict(frames_compiled=2),
                                                                                  dict(frames_compiled=0)])
    line = driver.compile_line(dict(phases=dict(eval=evaluation, train=train)))
    assert line == ('PASS compile: eval 4 breaks, compile 60 s, 50.0 -> 40.0 ms (1.25x), labels equal, box diff '
                    '3.0e-04 px, frames at other sizes 2/0; train 1 breaks, compile 95 s, 310.0 -> 205.0 ms '
                    '(1.51x), loss diff 2.0e-06, frames at other sizes 3/0')
    evaluation['same_labels'] = False
    assert driver.compile_line(dict(phases=dict(eval=evaluation))).startswith('FAIL compile: eval')
