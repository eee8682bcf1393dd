#!/usr/bin/env bash
# Quick start, command 1: install cloudfill into .venv and restore the bundled sample.
# Re-running reuses .venv. Output: out/sample/ (restored tiles, metrics, summary, report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh "bench"
.venv/bin/cloudfill run \
  --images 'sample/landsat8/images/*.tif' \
  --masks 'sample/landsat8/masks/{stem}.png' \
  --output out/sample \
  --config landsat8_l1 --evaluate --overwrite "$@"
