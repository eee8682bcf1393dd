# Sourced by demo.sh and test.sh: create (or reuse) .venv and install cloudfill with extras "$1".
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$1]"
