#!/usr/bin/env bash
# Checks a cloudfill worker image from inside it:
#
#   docker run --rm --gpus all --entrypoint /opt/cloudfill/check_image.sh IMAGE
#   docker run --rm --entrypoint /opt/cloudfill/check_image.sh IMAGE --cpu-ok   # no GPU here
#
# 1. The versions are the pinned ones (Python 3.11, Beam 2.77.0, TF 2.21.0) and Beam's
#    boot entrypoint is in place.
# 2. TensorFlow sees a GPU and runs an op on it (skipped with --cpu-ok).
# 3. A one-tile DirectRunner run of `cloudfill run` with the model shipped in the
#    image restores the tile: exit status 0, summary.json counts restored 1 of 1.
# Exits 0 when all pass; prints what failed otherwise.
set -euo pipefail

CPU_OK=0
[ "${1:-}" = "--cpu-ok" ] && CPU_OK=1
SAMPLE=${CLOUDFILL_SAMPLE:-/opt/cloudfill/sample}
BOOT=${BEAM_BOOT:-/opt/apache/beam/boot}
OUT=$(mktemp -d /tmp/cloudfill-check.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

fail() { echo "check_image: FAIL: $*" >&2; exit 1; }

echo "check_image: 1/3 versions and entrypoint"
[ -x "$BOOT" ] || fail "$BOOT is missing (COPY --from the Beam SDK image)"
python - <<'PY' || fail "versions differ from the pins"
import sys
import apache_beam, tensorflow as tf
assert sys.version_info[:2] == (3, 11), sys.version
assert apache_beam.__version__ == "2.77.0", apache_beam.__version__
assert tf.__version__.startswith("2.21."), tf.__version__
print(f"  python {sys.version.split()[0]}, beam {apache_beam.__version__}, tensorflow {tf.__version__}")
PY

echo "check_image: 2/3 GPU"
if [ "$CPU_OK" = 1 ]; then
  echo "  skipped (--cpu-ok)"
else
  python - <<'PY' || fail "TensorFlow sees no usable GPU (driver mounted? --gpus all? CUDA wheels installed?)"
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
assert gpus, "no GPU visible to TensorFlow"
for g in gpus:
  tf.config.experimental.set_memory_growth(g, True)
with tf.device("/GPU:0"):
  x = tf.random.uniform((1024, 1024))
  y = tf.linalg.matmul(x, x)
assert "GPU" in y.device, y.device
print(f"  {len(gpus)} GPU(s): {[g.name for g in gpus]}; matmul ran on {y.device}")
PY
fi

echo "check_image: 3/3 one tile through cloudfill run (DirectRunner)"
set +e
python -m pipeline.cli run \
  --images "$SAMPLE/images/*.tif" \
  --masks "$SAMPLE/masks/{stem}.png" \
  --output "$OUT/run" \
  --config landsat8_l1 --no-report \
  --runner DirectRunner
status=$?
set -e
[ "$status" = 0 ] || fail "cloudfill run exited $status"
python - "$OUT/run" <<'PY' || fail "the run's outputs are wrong"
import glob, json, os, sys
out = sys.argv[1]
s = json.load(open(os.path.join(out, "summary.json")))
assert s["matched"] == 1 and s["counts"] == {"restored": 1, "skipped": 0, "failed": 0}, s["counts"]
tiles = glob.glob(os.path.join(out, "restored", "*.tif"))
assert len(tiles) == 1, tiles
assert os.path.exists(os.path.join(out, "manifest.json"))
print(f"  restored {os.path.basename(tiles[0])} with model {s['model']['name']} {s['model']['version']}")
PY
echo "check_image: OK"
