"""The model reproduces the original FIBER implementation on the shared reference fixtures."""
import os.path as osp
import subprocess
import sys

import pytest



@pytest.mark.parametrize('name', ['tiny_v2', 'tiny_v3'])
def test_reference_parity(name, repo_root, reference_root):
    tool = osp.join(repo_root, 'tools', 'analysis_tools', 'reference_parity.py')
    proc = subprocess.run([sys.executable, tool, osp.join(reference_root, name)], capture_output=True,
                          text=True, cwd=repo_root, timeout=900)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'checks passed' in proc.stdout and 'FAIL' not in proc.stdout
