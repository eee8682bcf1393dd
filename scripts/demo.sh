#!/usr/bin/env bash
# Quick start, command 1: install cloudfill into .venv and restore the bundled sample.
# Re-running reuses .venv. Output: out/sample/ (restored tiles, metrics, summary, report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[bench]"
.venv/bin/cloudfill run \
  --images 'sample/landsat8/images/*.tif' \
  --masks 'sample/landsat8/masks/{stem}.png' \
  --output out/sample \
  --config landsat8_l1 --evaluate --overwrite "$@"
