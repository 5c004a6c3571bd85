#!/usr/bin/env bash
# The GPU check of fiber_mmdet (tools/analysis_tools/gpu_check.py; its docstring lists the steps), run from the
# repository with the repository on PYTHONPATH, so that it needs no `pip install -e .`.
#
# Usage: bash tools/analysis_tools/gpu_check.sh [gpu_check.py options, e.g. --dry-run, --steps parity,train]
# Environment: PYTHON (default python3), OUT (where summary.txt, check.log and bench.json go; default
# work_dirs/gpu_check).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" "$REPO/tools/analysis_tools/gpu_check.py" "$@"
