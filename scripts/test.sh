#!/usr/bin/env bash
# Quick start, command 2: install cloudfill with its test extras into .venv and run the tests.
# Also installs Debian's chromium (for the report test) when it is missing and we may install it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh "test,bench"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "warning: could not install chromium; the report's browser test will skip" >&2
  else
    echo "note: chromium is not installed; the report's browser test will skip" >&2
  fi
fi
exec .venv/bin/python -m pytest -q "$@"
