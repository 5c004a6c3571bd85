"""Run ``python TOOL --help`` for several tools at the cost of one interpreter start.

Usage: ``python tests/test_docs/run_help.py TOOL [TOOL ...]`` from the repository root. Prints one JSON object,
``{tool: {"rc": exit status, "out": stdout and stderr}}``.

The libraries every tool imports (torch, mmengine, mmdet, fiber_mmdet) are imported once here; each tool then
runs as ``__main__`` in its own forked process with ``sys.argv = [tool, '--help']``, so a tool that crashes,
hangs or exits cannot affect the others. A tool that does not answer within ``TIMEOUT_S`` is killed and
reported with exit status -9.
"""
import json
import os
import runpy
import signal
import sys
import tempfile
import time
from typing import Dict

TIMEOUT_S = 60.0


def preload() -> None:
    """Import what the tools share, so that each forked child starts with it loaded."""
    import torch  # noqa: F401
    import mmengine.config  # noqa: F401
    import mmdet.apis  # noqa: F401
    import mmdet.models  # noqa: F401
    import fiber_mmdet  # noqa: F401


def run_child(tool: str, out_path: str) -> None:
    """In the forked child: send stdout and stderr to ``out_path``, run ``tool --help``, exit with its status."""
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 0
    try:
        sys.argv = [tool, '--help']
        sys.path[0] = os.path.dirname(os.path.abspath(tool))  # as `python TOOL` sets it
        runpy.run_path(tool, run_name='__main__')
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001  (any failure is the tool's answer, reported to the parent)
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_tool(tool: str) -> Dict[str, object]:
    """``tool --help`` in a forked child: its exit status and output."""
    with tempfile.NamedTemporaryFile(suffix='.log', delete=False) as f:
        out_path = f.name
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        run_child(tool, out_path)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            rc = -9
            break
        time.sleep(0.02)
    with open(out_path, errors='replace') as f:
        out = f.read()
    os.unlink(out_path)
    return {'rc': rc, 'out': out}


def main() -> int:
    preload()
    results = {tool: run_tool(tool) for tool in sys.argv[1:]}
    sys.stdout.write(json.dumps(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
