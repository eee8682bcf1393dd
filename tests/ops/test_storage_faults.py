"""Transient object-storage errors: nothing lost, nothing duplicated.

A real GCS emulator sits behind :class:`tests.ops.fault_proxy.FaultProxy`,
which answers a seeded share of requests with 429 or 503 or drops the
connection. The pipeline (DirectRunner, in this process) reads its inputs
from ``gs://`` and writes its outputs there, through the proxy. Every tile
must still end restored, once, and complete; the proxy's counts prove that
faults really happened on every kind of request (listing, metadata, download,
upload).
"""

from __future__ import annotations

import collections
import json
import os

import pytest

from tests import servers
from tests.ops.fault_proxy import FaultProxy
from tests.ops.opslib import SAMPLE, SAMPLE_STEMS, cloudfill
from transforms.incremental import TAG_MODEL_VERSION
from transforms.raster_io import decode_raster, read_bytes, read_tags

BUCKET = "cloudfill-test"
N_TILES = 4
RATE = 0.15
SEED = 20261126
STALE = ("metrics/beam-temp-metrics-20261125T023000Z-aaaaaa-0123/part-0",
         "failed/beam-temp-dead-letters-20261125T023000Z-aaaaaa-4567/part-0",
         ".work/some_scene/0_0.npz")


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, mean_model):
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  staging = tmp_path_factory.mktemp("gcs-in")
  for stem in SAMPLE_STEMS[:N_TILES]:
    for sub, ext in (("images", ".tif"), ("masks", ".png")):
      os.makedirs(staging / sub, exist_ok=True)
      with open(os.path.join(SAMPLE, sub, stem + ext), "rb") as f:
        (staging / sub / (stem + ext)).write_bytes(f.read())
  with servers.gcs_emulator(BUCKET) as emulator:
    servers.upload_tree(str(staging), f"gs://{BUCKET}/in")
    for stale in STALE:  # What an interrupted earlier run would have left.
      with FileSystems.create(f"gs://{BUCKET}/out/{stale}") as f:
        f.write(b"stale")
    with FaultProxy(emulator, rate=RATE, seed=SEED) as proxy:
      os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
      try:
        status = cloudfill("--images", f"gs://{BUCKET}/in/images/*.tif",
                           "--masks", f"gs://{BUCKET}/in/masks/{{stem}}.png",
                           "--output", f"gs://{BUCKET}/out", "--model", mean_model,
                           "--config", "landsat8_l1")
      finally:
        os.environ["STORAGE_EMULATOR_HOST"] = emulator
    # Read back straight from the emulator, without faults.
    objects = {m.path: m.size_in_bytes
               for m in FileSystems.match([f"gs://{BUCKET}/out/**"])[0].metadata_list}
    contents = {p: read_bytes(p) for p in objects}
  print(f"\nFaultProxy injected {dict(proxy.injected)} faults "
        f"({proxy.total_injected} in all) over {proxy.forwarded} forwarded requests")
  return {"status": status, "proxy": proxy, "objects": objects, "contents": contents}


def test_faults_were_injected_on_every_kind_of_request(faulty_run, record_property):
  proxy = faulty_run["proxy"]
  record_property("injected_faults", dict(proxy.injected))
  assert set(proxy.injected) == {"429", "503", "drop"}
  assert proxy.total_injected >= 8
  kinds = collections.Counter()
  for method, path, _ in proxy.failed_requests:
    if path.startswith("/upload/"):
      kinds["upload"] += 1
    elif path.startswith("/download/") or "alt=media" in path:
      kinds["download"] += 1
    elif "/o?" in path:
      kinds["list"] += 1
    elif method == "GET":
      kinds["metadata"] += 1
  assert {"upload", "metadata"} <= set(kinds), kinds


def test_every_tile_restored_once_and_complete_despite_faults(faulty_run):
  assert faulty_run["status"] == 0
  objects, contents = faulty_run["objects"], faulty_run["contents"]
  restored = sorted(p for p in objects if "/out/restored/" in p)
  assert restored == sorted(f"gs://{BUCKET}/out/restored/{s}.tif" for s in SAMPLE_STEMS[:N_TILES])
  for path in restored:
    image, profile = decode_raster(contents[path], ".tif")
    assert image.shape == (256, 256, 3) and profile["dtype"] == "uint16"
    assert read_tags(contents[path], ".tif")[TAG_MODEL_VERSION] == "test-mean-1"
  # No temporary or stray object anywhere under the output (an earlier run's included).
  assert not [p for p in objects if "beam-temp" in p or "/.work/" in p or p.endswith(".tmp")]
  summary = json.loads(contents[f"gs://{BUCKET}/out/summary.json"])
  assert summary["counts"] == {"restored": N_TILES, "skipped": 0, "failed": 0}
  assert summary["counts_add_up"]
  manifest = json.loads(contents[f"gs://{BUCKET}/out/manifest.json"])
  assert sorted(r["output"] for r in manifest["restored"]) == restored
  metrics = [json.loads(line) for p in objects if "/out/metrics/" in p
             for line in contents[p].decode().splitlines() if line.strip()]
  assert sorted(m["stem"] for m in metrics) == sorted(SAMPLE_STEMS[:N_TILES])  # Once each.
  assert not [p for p in objects if "/out/failed/" in p]  # Nothing dead-lettered.
