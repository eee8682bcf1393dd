"""Load on ``cloudfill serve``: concurrent clients against the raw model loop.

A script, not a test. It starts ``cloudfill serve`` in its own process on
127.0.0.1, then in this process:

1. **raw**: the SavedModel's ``restore`` signature in a tight loop over the
   same tiles' windows (batch ``--batch``, the pipeline's and the server's
   default 16), warm, as many tiles as the clients will send; tiles per
   second.
2. **serve**: ``--clients`` threads (default 32), each with its own HTTP
   connection, POST ``/v1/restore`` (GeoTIFF + PNG mask, ``--size``² tiles)
   until ``--requests`` have been answered; throughput, p50/p95/max latency,
   statuses, model calls and mean batch (from ``/healthz``), and how many
   answers are byte-identical to the same tile restored alone (and, for the
   others, how many pixels differ and by how much). ``--exact`` serves
   without sharing model calls across requests.
3. **raw** again (the machine's load may drift; both runs are reported).
4. **preview**: ``/v1/preview`` and ``/v1/restore`` latency for one 1024²
   image (the page's progressive loading), median of 5.

Tiles are crops of the real Landsat 8 scene under real cloud-mask shapes
(:func:`benchmarks.common.make_tiles`). Writes JSON to ``--out``.

Example::

  .venv/bin/python -m benchmarks.serve_load --clients 32 --requests 256 --tag cpu
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

import numpy as np

from benchmarks import common
from model_loader import locate, native
from transforms.records import Tile, TilePair
from transforms.window import WindowSpec, cut

OUT = os.path.join(common.ROOT, "benchmarks", "results", "serve")


def _free_port() -> int:
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start_server(model: Optional[str], port: int, max_batch: int, wait_ms: float, exact: bool,
                  extra: list[str]) -> subprocess.Popen:
  import requests  # pylint: disable=import-outside-toplevel
  cmd = [
      sys.executable, "-m", "pipeline.cli", "serve", "--port",
      str(port), "--max-batch",
      str(max_batch), "--batch-wait-ms",
      str(wait_ms)
  ] + (["--model", model] if model else []) + (["--exact"] if exact else []) + extra
  proc = subprocess.Popen(cmd, cwd=common.ROOT, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 180
  while time.monotonic() < deadline:
    try:
      requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
      return proc
    except requests.ConnectionError:
      if proc.poll() is not None:
        raise RuntimeError(f"cloudfill serve exited with {proc.returncode}")
      time.sleep(0.5)
  proc.kill()
  raise RuntimeError("cloudfill serve did not start in 180 s")


def raw_loop(model,
             tiles: list[dict[str, Any]],
             batch: int,
             window: int,
             overlap: int,
             rounds: int = 1) -> dict[str, Any]:
  """Tiles per second of the bare ``restore`` signature on the tiles' windows."""
  spec = WindowSpec(size=window, overlap=overlap)
  wins = [
      w for t in tiles
      for w in cut(Tile(TilePair(t["name"], t["name"], None), t["image"], t["mask"], {"dtype": "uint16"}), spec)
  ]
  images = np.stack([w.image for w in wins])
  masks = np.stack([w.mask for w in wins])
  model(images[:batch], masks[:batch])  # Warm.
  start = time.perf_counter()
  for _ in range(rounds):
    for i in range(0, len(wins), batch):
      model(images[i:i + batch], masks[i:i + batch])
  seconds = time.perf_counter() - start
  return {
      "tiles": len(tiles) * rounds,
      "windows": len(wins) * rounds,
      "batch": batch,
      "seconds": round(seconds, 3),
      "tiles_per_s": round(len(tiles) * rounds / seconds, 3)
  }


def load(url: str, payloads: list[tuple[bytes, bytes]], clients: int, total: int) -> dict[str, Any]:
  """``clients`` threads POST ``/v1/restore`` until ``total`` answers came back."""
  import requests  # pylint: disable=import-outside-toplevel
  counter = iter(range(total))
  lock = threading.Lock()
  latencies, statuses, bodies = [], {}, {}

  def client(_):
    session = requests.Session()
    while True:
      with lock:
        i = next(counter, None)
      if i is None:
        return
      image, mask = payloads[i % len(payloads)]
      t0 = time.perf_counter()
      r = session.post(url + "/v1/restore", files={"image": ("t.tif", image), "mask": ("m.png", mask)}, timeout=600)
      dt = time.perf_counter() - t0
      with lock:
        latencies.append(dt)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        bodies[i] = r.content

  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    list(pool.map(client, range(clients)))
  wall = time.perf_counter() - start
  lat = sorted(latencies)
  pct = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
  return {
      "clients": clients,
      "requests": total,
      "seconds": round(wall, 3),
      "tiles_per_s": round(total / wall, 3),
      "statuses": statuses,
      "latency_s": {
          "p50": round(pct(0.5), 3),
          "p95": round(pct(0.95), 3),
          "max": round(lat[-1], 3),
          "mean": round(statistics.mean(lat), 3)
      },
      "_bodies": bodies
  }


def differences(bodies: dict[int, bytes], solo: list[bytes]) -> dict[str, Any]:
  """How answers under load differ from the same tile restored alone."""
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel

  def read(data):
    with MemoryFile(data) as mem, mem.open() as src:
      return src.read().astype(np.int64)

  differing = [i for i in bodies if bodies[i] != solo[i % len(solo)]]
  pixels, worst = 0, 0
  for i in differing:
    a, b = read(bodies[i]), read(solo[i % len(solo)])
    diff = np.abs(a - b)
    pixels += int((diff > 0).any(axis=0).sum())
    worst = max(worst, int(diff.max()))
  return {
      "identical": len(bodies) - len(differing),
      "differing": len(differing),
      "differing_pixels": pixels,
      "max_abs_diff_dn": worst
  }


def preview_latency(url: str, folder: str, repeats: int = 5) -> dict[str, Any]:
  """Median seconds of ``/v1/preview`` and ``/v1/restore`` on a 1024² tile."""
  import requests  # pylint: disable=import-outside-toplevel
  big, _ = common.make_tiles(1, size=1024, seed=7)
  img_glob, mask_tpl = common.write_tiles(big, os.path.join(folder, "big"))
  name = big[0]["name"]
  image = open(img_glob.replace("*", name), "rb").read()
  mask = open(mask_tpl.format(stem=name), "rb").read()
  out = {}
  for route in ("/v1/preview", "/v1/restore"):
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      r = requests.post(url + route, files={"image": ("big.tif", image), "mask": ("m.png", mask)}, timeout=600)
      times.append(time.perf_counter() - t0)
      assert r.status_code == 200, r.text
    out[route] = {"median_s": round(statistics.median(times), 3), "all_s": [round(t, 3) for t in times]}
  out["coverage"] = round(float(big[0]["mask"].mean()), 3)
  return out


def main(argv: Optional[list[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", default=None, help="SavedModel (default: the packaged model)")
  p.add_argument("--clients", type=int, default=32)
  p.add_argument("--requests", type=int, default=256)
  p.add_argument("--tiles", type=int, default=64, help="distinct tiles, cycled")
  p.add_argument("--size", type=int, default=256)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--batch-wait-ms", type=float, default=5.0)
  p.add_argument("--exact", action="store_true", help="serve with --exact (no batches shared across requests)")
  p.add_argument("--serve-arg",
                 action="append",
                 default=[],
                 help="extra flag for cloudfill serve, e.g. --serve-arg=--max-concurrent=32")
  p.add_argument("--no-preview", action="store_true")
  p.add_argument("--out", default=OUT)
  p.add_argument("--tag", default="run")
  args = p.parse_args(argv)
  import requests  # pylint: disable=import-outside-toplevel
  result: dict[str, Any] = {"machine": common.machine(), "args": vars(args)}
  tiles, where = common.make_tiles(args.tiles, size=args.size)
  result["tiles"] = where
  folder = tempfile.mkdtemp(prefix="cloudfill-serve-load-")
  img_glob, mask_tpl = common.write_tiles(tiles, folder)
  payloads = [(open(img_glob.replace("*", t["name"]), "rb").read(), open(mask_tpl.format(stem=t["name"]), "rb").read())
              for t in tiles]
  uri = locate.resolve(args.model)
  card = locate.read_card(uri)
  port = _free_port()
  server = _start_server(args.model, port, args.batch, args.batch_wait_ms, args.exact, args.serve_arg)
  url = f"http://127.0.0.1:{port}"
  try:
    model = native.load(locate.stage_locally(uri))
    rounds = max(1, args.requests // len(tiles))  # The raw loop restores as many tiles as the clients send.
    result["raw_before"] = raw_loop(model, tiles, args.batch, card.window, card.overlap, rounds)
    print("raw before:", result["raw_before"], flush=True)
    solo = [
        requests.post(url + "/v1/restore", files={
            "image": ("t.tif", a),
            "mask": ("m.png", b)
        }, timeout=600).content for a, b in payloads
    ]  # Also warms the server.
    before = requests.get(url + "/healthz", timeout=10).json()["batches"]
    served = load(url, payloads, args.clients, args.requests)
    after = requests.get(url + "/healthz", timeout=10).json()["batches"]
    bodies = served.pop("_bodies")
    served["versus_solo"] = differences(bodies, solo)
    calls = after["calls"] - before["calls"]
    served["model_calls"] = calls
    served["mean_batch"] = round((after["windows"] - before["windows"]) / max(1, calls), 2)
    served["shared_calls"] = after["shared_calls"] - before["shared_calls"]
    served["server_model_seconds"] = round(after["model_seconds"] - before["model_seconds"], 3)
    result["serve"] = served
    print("serve:", served, flush=True)
    result["raw_after"] = raw_loop(model, tiles, args.batch, card.window, card.overlap, rounds)
    print("raw after:", result["raw_after"], flush=True)
    raw = max(result["raw_before"]["tiles_per_s"], result["raw_after"]["tiles_per_s"])
    result["serve_vs_raw"] = round(served["tiles_per_s"] / raw, 3)
    result["serve_vs_raw_mean"] = round(
        served["tiles_per_s"] /
        statistics.mean([result["raw_before"]["tiles_per_s"], result["raw_after"]["tiles_per_s"]]), 3)
    if not args.no_preview:
      result["preview_1024"] = preview_latency(url, folder)
      print("1024² preview/restore:", result["preview_1024"], flush=True)
  finally:
    server.terminate()
    server.wait(timeout=60)
  result["loadavg_end"] = common.loadavg()
  path = common.write_json(os.path.join(args.out, f"serve_load_{args.tag}.json"), result)
  print(f"serve {result['serve']['tiles_per_s']} tiles/s = {result['serve_vs_raw']:.0%} of the best raw loop "
        f"({result['serve_vs_raw_mean']:.0%} of their mean); p50 {result['serve']['latency_s']['p50']} s, "
        f"p95 {result['serve']['latency_s']['p95']} s; written {path}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
