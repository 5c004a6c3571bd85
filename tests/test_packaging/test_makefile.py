"""The Makefile's two commands: `make quickstart` installs only the runtime (no apt-get, no browser, no test or
demo extras), `make test` adds them; `make setup` keeps an installed torch / mmcv that meets the requirements.

The install steps run with ``PIP='echo PIP'``, so they print what they would install and install nothing; the
version checks run for real against this environment's torch and mmcv.
"""
import os.path as osp
import subprocess

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# what only the test suite needs
TEST_ONLY = ('apt-get', 'chromium', 'requirements-test.txt', 'pytest')


def make(*args: str) -> str:
    result = subprocess.run(['make', '--no-print-directory', *args], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_quickstart_installs_only_the_runtime():
    quickstart, test = make('-n', 'quickstart'), make('-n', 'test')
    for word in TEST_ONLY:
        assert word not in quickstart, word
        assert word in test, word
    assert 'requirements.txt' in quickstart and 'tools/misc/quickstart.py' in quickstart
    # the browser step says what it installs and why, and needs root only where it installs
    assert "the web demo's browser test" in test and 'sudo' in test
    with open(osp.join(REPO_ROOT, '.ci', 'run')) as f:
        assert 'make test' in f.read()


def test_setup_keeps_a_torch_that_meets_the_requirement():
    kept = make('-s', 'setup-torch', 'PIP=echo PIP')
    assert 'present: kept' in kept and 'PIP install -q torch' not in kept
    replaced = make('-s', 'setup-torch', 'PIP=echo PIP', 'TORCH_REQUIREMENT=torch>=999')
    assert 'PIP install -q torch==2.14.1 torchvision==0.29.1' in replaced


def test_setup_keeps_an_mmcv_that_meets_the_requirement():
    # (TORCH_REQUIREMENT unmet only so that the torch step prints instead of importing torch)
    kept = make('-s', 'setup-mmcv', 'PIP=echo PIP', 'TORCH_REQUIREMENT=torch>=999')
    assert 'with compiled ops: present, kept' in kept and 'mmcv==2.1.0' not in kept
