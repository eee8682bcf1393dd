"""Transient object-storage errors: nothing lost, nothing duplicated.

Real object stores on loopback (the GCS emulator, moto's S3 server) sit behind
:class:`tests.ops.fault_proxy.FaultProxy`, which answers a seeded share of
requests with 429 or 503 or drops the connection. The pipeline (DirectRunner,
in this process) reads its inputs from ``gs://`` / ``s3://`` and writes its
outputs there, through the proxy. Every tile must still end restored, once,
and complete; the proxy's counts prove that faults really happened on
uploads and metadata requests (and, as the seed falls, listings and
downloads). Objects an interrupted earlier run left under the output must be
gone at the end.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys

import pytest

from tests import servers
from tests.ops.fault_proxy import FaultProxy
from tests.ops.opslib import SAMPLE, SAMPLE_STEMS, cloudfill
from transforms.incremental import TAG_MODEL_VERSION
from transforms.raster_io import decode_raster, read_tags

pytestmark = pytest.mark.slow  # runs against storage emulators behind a fault proxy

BUCKET = "cloudfill-test"
N_TILES = {"gs": 3, "s3": 2}  # Each S3 call costs a new boto3 client in Beam: keep it short.
RATE = {"gs": 0.15, "s3": 0.2}
SEED = 20261126
STALE = ("metrics/beam-temp-metrics-20261125T023000Z-aaaaaa-0123/part-0",
         "failed/beam-temp-dead-letters-20261125T023000Z-aaaaaa-4567/part-0", ".work/some_scene/0_0.npz")


def _inputs(n: int) -> dict[str, bytes]:
  out = {}
  for stem in SAMPLE_STEMS[:n]:
    for sub, ext in (("images", ".tif"), ("masks", ".png")):
      with open(os.path.join(SAMPLE, sub, stem + ext), "rb") as f:
        out[f"in/{sub}/{stem}{ext}"] = f.read()
  return out


@contextlib.contextmanager
def _gcs():
  """Yields (upstream url, put(key, bytes), list_all() -> {uri: bytes}, through(url) -> Beam args).

  ``through(url)`` points the clients at ``url`` (the proxy, or the server again).
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  from transforms.raster_io import read_bytes  # pylint: disable=import-outside-toplevel
  with servers.gcs_emulator(BUCKET) as emulator:

    def put(key, data):
      with FileSystems.create(f"gs://{BUCKET}/{key}") as f:
        f.write(data)

    def list_all():
      found = FileSystems.match([f"gs://{BUCKET}/out/**"])[0].metadata_list
      return {m.path: read_bytes(m.path) for m in found}

    def through(proxy_url):
      os.environ["STORAGE_EMULATOR_HOST"] = proxy_url
      return []

    try:
      yield emulator, put, list_all, through
    finally:
      os.environ["STORAGE_EMULATOR_HOST"] = emulator


@contextlib.contextmanager
def _moto_server():
  """moto's S3 server in a subprocess (tests.servers runs it in a thread of this
  process, where it competes with the pipeline for the GIL)."""
  port = servers.free_port()
  exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
  proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    servers.wait_for_port(port)
    yield servers.s3_bucket_options(port, BUCKET)
  finally:
    proc.terminate()
    try:
      proc.wait(10)
    except subprocess.TimeoutExpired:
      proc.kill()


@contextlib.contextmanager
def _s3():
  import boto3  # pylint: disable=import-outside-toplevel
  with _moto_server() as s3:
    client = boto3.client("s3",
                          endpoint_url=s3["endpoint"],
                          aws_access_key_id="testing",
                          aws_secret_access_key="testing",
                          region_name="us-east-1")

    def put(key, data):
      client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def list_all():
      keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="out/").get("Contents", [])]
      return {f"s3://{BUCKET}/{k}": client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}

    def through(proxy_url):
      return [a.replace(s3["endpoint"], proxy_url) for a in s3["beam_args"]]

    yield s3["endpoint"], put, list_all, through


@pytest.fixture(scope="module", params=["gs", "s3"])
def faulty_run(request, mean_model):
  scheme = request.param
  with (_gcs() if scheme == "gs" else _s3()) as (upstream, put, list_all, through):
    for key, data in _inputs(N_TILES[scheme]).items():
      put(key, data)
    for stale in STALE:  # What an interrupted earlier run would have left.
      put(f"out/{stale}", b"stale")
    with FaultProxy(upstream, rate=RATE[scheme], seed=SEED, fail_first=("GET", "HEAD", "POST", "PUT")) as proxy:
      beam_args = through(proxy.url)
      status = cloudfill("--images", f"{scheme}://{BUCKET}/in/images/*.tif", "--masks",
                         f"{scheme}://{BUCKET}/in/masks/{{stem}}.png", "--output", f"{scheme}://{BUCKET}/out",
                         "--model", mean_model, "--config", "landsat8_l1", *beam_args)
    through(upstream)  # Back to the server itself, without faults,
    contents = list_all()  # to read what was written.
  print(f"\n{scheme}: FaultProxy injected {dict(proxy.injected)} faults "
        f"({proxy.total_injected} in all) over {proxy.forwarded} forwarded requests")
  return {"scheme": scheme, "status": status, "proxy": proxy, "contents": contents, "n": N_TILES[scheme]}


def _kind(scheme: str, method: str, path: str) -> str:
  if scheme == "gs":
    if path.startswith("/upload/"):
      return "upload"
    if path.startswith("/download/") or "alt=media" in path:
      return "download"
    return "list" if "/o?" in path else "metadata"
  if method in ("PUT", "POST"):
    return "upload"
  if method == "HEAD":
    return "metadata"
  return "list" if "list-type=" in path else "download"


def test_faults_were_injected_on_uploads_and_metadata(faulty_run, record_property):
  proxy, scheme = faulty_run["proxy"], faulty_run["scheme"]
  record_property("injected_faults", dict(proxy.injected))
  assert proxy.total_injected >= 4
  assert len(proxy.injected) >= 2  # At least two of 429, 503, dropped connection.
  kinds = collections.Counter(_kind(scheme, m, p) for m, p, _ in proxy.failed_requests)
  assert {"upload", "metadata"} <= set(kinds), kinds


def test_every_tile_restored_once_and_complete_despite_faults(faulty_run):
  scheme, contents, n = faulty_run["scheme"], faulty_run["contents"], faulty_run["n"]
  out = f"{scheme}://{BUCKET}/out"
  assert faulty_run["status"] == 0
  restored = sorted(p for p in contents if p.startswith(f"{out}/restored/"))
  assert restored == sorted(f"{out}/restored/{s}.tif" for s in SAMPLE_STEMS[:n])
  for path in restored:
    image, profile = decode_raster(contents[path], ".tif")
    assert image.shape == (256, 256, 3) and profile["dtype"] == "uint16"
    assert read_tags(contents[path], ".tif")[TAG_MODEL_VERSION] == "test-mean-1"
  # No temporary or stray object anywhere under the output (an earlier run's included).
  assert not [p for p in contents if "beam-temp" in p or "/.work/" in p or p.endswith(".tmp")]
  summary = json.loads(contents[f"{out}/summary.json"])
  assert summary["counts"] == {"restored": n, "skipped": 0, "failed": 0}
  assert summary["counts_add_up"]
  manifest = json.loads(contents[f"{out}/manifest.json"])
  assert sorted(r["output"] for r in manifest["restored"]) == restored
  metrics = [
      json.loads(line) for p in contents if p.startswith(f"{out}/metrics/")
      for line in contents[p].decode().splitlines() if line.strip()
  ]
  assert sorted(m["stem"] for m in metrics) == sorted(SAMPLE_STEMS[:n])  # Once each.
  assert not [p for p in contents if p.startswith(f"{out}/failed/")]  # Nothing dead-lettered.
