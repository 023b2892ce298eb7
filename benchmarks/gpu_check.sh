#!/usr/bin/env bash
# Every GPU measurement in one command (benchmarks/gpu_check.py); --dry-run runs each part tiny on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
[ -x .venv/bin/python ] && PYTHON=${PYTHON_OVERRIDE:-.venv/bin/python}
exec "$PYTHON" benchmarks/gpu_check.py "$@"
