#!/usr/bin/env bash
# Every GPU measurement in one command (benchmarks/gpu_check.py); --dry-run runs each part tiny on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
# the checkout's .venv when there is one, else python on PATH; PYTHON=... chooses another
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python || command -v python3); fi
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
