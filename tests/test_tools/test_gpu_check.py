"""tools/analysis_tools/gpu_check.sh: valid bash, and its dry run names every step and the missing fixtures."""
import os
import subprocess

from .conftest import TOOLS

SCRIPT = str(TOOLS / 'analysis_tools' / 'gpu_check.sh')


def _dry_run(tmp_path, *args):
    env = dict(os.environ, OUT=str(tmp_path / 'out'))
    env.pop('FIBER_REFERENCE_FIXTURES', None)
    proc = subprocess.run(['bash', SCRIPT, *args, '--dry-run'], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (tmp_path / 'out' / 'summary.txt').read_text()
    return proc.stdout, summary


def test_syntax():
    assert subprocess.run(['bash', '-n', SCRIPT]).returncode == 0


def test_dry_run_lists_parity_timings_and_prompts(tmp_path):
    fixtures = tmp_path / 'fixtures'
    for name in ('tiny_v2', 'tiny_v3'):
        (fixtures / name).mkdir(parents=True)
        (fixtures / name / 'outputs.pth').write_bytes(b'')
    out, summary = _dry_run(tmp_path, str(fixtures))
    commands = [l for l in summary.splitlines() if l.startswith('DRY-RUN: ')]
    parity = [c for c in commands if 'reference_parity.py' in c]
    assert len(parity) == 2 and all('--device cuda' in c for c in parity)
    bench = [c for c in commands if 'benchmark.py' in c]
    assert len(bench) == 4  # 512x512 and 800x1333, fp32 and bf16
    assert {(c.split('--size ')[1].split(' --')[0], c.split('--amp ')[1].split()[0]) for c in bench} == {
        ('512 512', 'none'), ('512 512', 'bf16'), ('800 1333', 'none'), ('800 1333', 'bf16')}
    prompts = [c for c in commands if 'benchmark_prompts.py' in c]
    assert len(prompts) == 1 and '--classes 1203 --chunk 40' in prompts[0]
    assert 'parity SKIPPED' not in summary and out.strip().splitlines()[-1].endswith(
        f'(JSON: {tmp_path / "out"}/bench_*.json)')


def test_missing_fixtures_are_reported(tmp_path):
    _, summary = _dry_run(tmp_path, str(tmp_path / 'nowhere'))
    assert 'reference fixtures not found' in summary and 'parity SKIPPED' in summary
    assert 'reference_parity.py' not in summary and 'parity: skipped' in summary
