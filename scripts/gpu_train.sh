#!/usr/bin/env bash
# GPU training in one script: pack here, train there.
#
#   bash scripts/gpu_train.sh pack [DATA]           # on this machine: runs/bundle/ = training data
#                                                   # (one .npz) + the keras, namex, optree wheels
#   bash scripts/gpu_train.sh train OUT [L1_MIN] [GAN_MIN]
#                                                   # on a GPU machine with JAX but no TensorFlow and
#                                                   # no network: L1 stage, then a GAN fine-tune
#   bash scripts/gpu_train.sh sweep OUT MINUTES NAME:KEY=VALUE,... [NAME:...]
#                                                   # there: several variants trained together on the
#                                                   # same batches (cloudfill train --variant); OUT gets
#                                                   # NAME.tar.gz per variant (best weights, records,
#                                                   # TensorBoard logs) and train.log
#
# runs/bundle is self-contained (about 40 MiB): carry it (with this repository) to the GPU
# machine. OUT receives l1.tar.gz and gan.tar.gz (weights, generator.json, metrics.json,
# trained_on.json, TensorBoard logs) and train.log. Export each with
# `cloudfill export --run DIR --out MODEL_DIR` on a machine with TensorFlow (docs/model.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}
setup() {  # on the GPU machine: Keras from the carried wheels, the JAX backend
  mkdir -p "$1" /tmp/cloudfill-run
  [ -n "${SKIP_WHEELS:-}" ] || "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/cloudfill-site runs/bundle/wheels/*.whl
  export PYTHONPATH=/tmp/cloudfill-site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
}
case "$cmd" in
pack)
  DATA=${2:-../shared/data}
  PY=${PYTHON:-.venv/bin/python}
  "$PY" -m training.bundle --data "$DATA" --out runs/bundle/data.npz
  mkdir -p runs/bundle/wheels
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d runs/bundle/wheels keras==3.15.1 namex==0.1.0 optree==0.20.0
  du -sh runs/bundle
  ;;
train)
  OUT=${2:?usage: gpu_train.sh train OUT [L1_MIN] [GAN_MIN]}
  L1_MIN=${3:-5.5}
  GAN_MIN=${4:-2}
  BATCH=${BATCH:-32}
  EXTRA=${EXTRA:-}
  PY=${PYTHON:-python3}
  setup "$OUT"
  "$PY" -m training.train --data runs/bundle/data.npz --out /tmp/cloudfill-run/l1 \
    --minutes "$L1_MIN" --batch "$BATCH" --crop 128 --lr 1e-3 --val-every 45 --log-every 200 $EXTRA \
    2>&1 | tee -a "$OUT/train.log"
  tar -C /tmp/cloudfill-run -czf "$OUT/l1.tar.gz" l1
  if [ "$GAN_MIN" != "0" ]; then
    "$PY" -m training.train --data runs/bundle/data.npz --out /tmp/cloudfill-run/gan \
      --init-weights /tmp/cloudfill-run/l1/generator.weights.h5 --gan hinge --adv-weight 0.01 \
      --fm-weight 1.0 --minutes "$GAN_MIN" --batch "$BATCH" --crop 128 --lr 2e-4 \
      --val-every 30 --log-every 200 $EXTRA 2>&1 | tee -a "$OUT/train.log"
    tar -C /tmp/cloudfill-run -czf "$OUT/gan.tar.gz" gan
  fi
  ;;
sweep)
  OUT=${2:?usage: gpu_train.sh sweep OUT MINUTES NAME:KEY=VALUE,...}
  MIN=${3:?usage: gpu_train.sh sweep OUT MINUTES NAME:KEY=VALUE,...}
  shift 3
  [ $# -gt 0 ] || { echo "gpu_train.sh sweep: give at least one NAME:KEY=VALUE,... variant" >&2; exit 2; }
  BATCH=${BATCH:-32}
  EXTRA=${EXTRA:-}
  PY=${PYTHON:-python3}
  setup "$OUT"
  variants=()
  for v in "$@"; do variants+=(--variant "$v"); done
  rm -rf /tmp/cloudfill-run/sweep  # Only this sweep's variants are archived below.
  "$PY" -m training.train --data runs/bundle/data.npz --out /tmp/cloudfill-run/sweep --minutes "$MIN" \
    --batch "$BATCH" --crop 128 --crops-per-region 4 --val-every 40 --log-every 200 "${variants[@]}" $EXTRA \
    2>&1 | grep --line-buffered -v cuda_timer | tee -a "$OUT/train.log"
  # A device run brings back only a few files, none over about 30 MB (one 61 MB archive of four
  # variants did not come back): one small archive per variant, its best weights and records only.
  for d in /tmp/cloudfill-run/sweep/*/; do
    name=$(basename "$d")
    tar -C /tmp/cloudfill-run/sweep -czf "$OUT/$name.tar.gz" --exclude=last.weights.h5 "$name"
  done
  ;;
*)
  sed -n '2,18p' "$0"; exit 2 ;;
esac
