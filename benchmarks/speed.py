"""Speed of the restoration pipeline against the bare model and classical fillers.

Issue #4, items 2 and 3. A script, not a test: it prints its figures and
writes them as JSON into ``--out`` (default ``benchmarks/results/speed/``).

Sections (``--sections``, default ``raw,pipeline,fillers,stages``; ``all``
adds ``profile`` and ``gpu``):

* ``raw``: tiles per second of the SavedModel's ``restore`` signature in a
  tight loop at the pipeline's batch size (and a few others), on the same
  windows the pipeline cuts; also ``serving_default`` (what ``--backend tfx``
  calls) on serialized examples.
* ``pipeline``: ``pipeline.run.run`` on the DirectRunner, single process
  (``--direct_running_mode=in_memory``) and ``multi_processing`` with 2
  workers, with ``--backend native`` and ``--backend tfx``. Each run is a
  fresh interpreter; the figure is restored tiles / seconds from the call of
  ``run()`` (model check, graph construction, model loading, every stage,
  summary) to ``wait_until_finish()`` returning, so interpreter start and
  imports are excluded (they are reported beside it). A second, tiny run of
  the first configuration gives the fixed start-up cost and so the marginal
  (steady-state) rate.
* ``fillers``: the classical fillers of ``benchmarks/fillers.py`` (GDAL
  FillNodata, OpenCV Telea/NS, scikit-image biharmonic, mean fill) on the
  same tiles, one thread; GDAL through ``rasterio.fill.fillnodata`` directly
  when that module is absent.
* ``stages``: each pipeline step's own cost per tile, measured in-process on
  the same tiles (decode, cut, sparsify, the Beam coder round trip at the
  CoGroupByKey, composite, encode + write, measure), against the model's
  time per tile: where the pipeline loses time against the raw loop.
* ``profile``: a py-spy sampling profile of one in_memory native run,
  attributed to the same steps (needs ``pip install py-spy``).
* ``gpu``: when TensorFlow sees a GPU, batch sizes x XLA on/off with the
  SavedModel, and float32 vs mixed_float16 with the generator rebuilt from
  ``training.generator``; on CPU it says it found none.

``--large`` instead times ``cloudfill run`` on large scenes (the real
Landsat 8 scene mirrored up to 2000², 4000², 8000² by default, with tiled
real cloud masks) in a subprocess, with its wall seconds and peak resident
memory (``getrusage(RUSAGE_CHILDREN)``).

Examples::

  .venv/bin/python -m benchmarks.speed --tiles 32                 # ~2 min
  .venv/bin/python -m benchmarks.speed --tiles 192 --sections all
  .venv/bin/python -m benchmarks.speed --large --sizes 2000,4000,8000
  .venv/bin/python -m benchmarks.speed --markdown benchmarks/results/speed/*.json
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

if __package__ in (None, ""):  # Run as a file: make the repository importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402  pylint: disable=wrong-import-position

ROOT = common.ROOT
DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results", "speed")
VALUE_RANGE = (0.0, 65535.0)
GOAL_RATIO = 0.85
RESULT_TAG = "SPEED_RESULT "
PIPELINE_CONFIGS = (("in_memory", "native"), ("in_memory", "tfx"),
                    ("multi_processing", "native"), ("multi_processing", "tfx"))


# --------------------------------------------------------------------------- helpers


def _timeit(fn: Callable[[], Any], min_seconds: float = 1.0, min_runs: int = 3,
            max_runs: int = 10_000) -> tuple[float, int]:
  """(median seconds per call, calls) over at least ``min_seconds``."""
  times = []
  start = time.perf_counter()
  while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), len(times)


def _card(model_dir: str):
  from model_loader import locate  # pylint: disable=import-outside-toplevel
  return locate.read_card(model_dir)


def _windows(tiles, window: int, overlap: int):
  """The windows the pipeline cuts from ``tiles`` (model inputs, with each
  tile's context crop as :class:`transforms.window.CutWindows` cuts them)."""
  from transforms.records import Tile, TilePair  # pylint: disable=import-outside-toplevel
  from transforms.window import WindowSpec, cut, tile_context  # pylint: disable=import-outside-toplevel
  spec = WindowSpec(size=window, overlap=overlap, value_range=VALUE_RANGE)
  out = []
  for t in tiles:
    tile = Tile(pair=TilePair(t["name"], t["name"], None), image=t["image"], mask=t["mask"],
                profile={"dtype": "uint16", "nodata": 0})
    fill, mapped = tile_context(tile, spec)
    out.extend(cut(tile, spec, fill, mapped))
  return out


def _stacked(wins, names) -> dict[str, np.ndarray]:
  """``{input name: [N, S, S, *]}`` of the windows' model inputs (what the native handler stacks)."""
  inputs = [w.model_inputs() for w in wins]
  return {n: np.stack([i[n] for i in inputs]) for n in names if all(n in i for i in inputs)}


def _fmt_rate(x: Optional[float]) -> str:
  return "n/a" if x is None else f"{x:7.2f}"


# --------------------------------------------------------------------------- (a) raw model


def bench_raw(tiles, model_dir: str, batch_size: int, sweep: Sequence[int],
              min_seconds: float, xla: bool = False) -> dict[str, Any]:
  """Tiles/s of the bare ``restore`` signature, and of ``serving_default``."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from model_loader import native, tfx  # pylint: disable=import-outside-toplevel
  card = _card(model_dir)
  wins = _windows(tiles, card.window, card.overlap)
  model = native.LoadedModel(model_dir)
  feed = _stacked(wins, ("image", "mask") + model.input_names)
  images, masks = feed.pop("image"), feed.pop("mask")
  out: dict[str, Any] = {"windows": len(wins), "tiles": len(tiles), "window": card.window,
                         "model": {"name": card.name, "version": card.version},
                         "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                         "by_batch": {}}

  def loop(bs: int, fn) -> float:
    fn(images[:bs], masks[:bs], **{k: v[:bs] for k, v in feed.items()})  # Warm-up (tracing, allocation).
    n = 0
    start = time.perf_counter()
    while True:
      for i in range(0, len(wins), bs):
        fn(np.stack(list(images[i:i + bs])), np.stack(list(masks[i:i + bs])),
           **{k: np.stack(list(v[i:i + bs])) for k, v in feed.items()})
        n += min(bs, len(wins) - i)
      if time.perf_counter() - start >= min_seconds:
        break
    return n / (time.perf_counter() - start)

  for bs in sorted(set(sweep) | {batch_size}):
    rate = loop(bs, model)
    out["by_batch"][str(bs)] = {"windows_per_s": rate,
                                "tiles_per_s": rate * len(tiles) / len(wins)}
    common.log(f"  raw restore   batch {bs:3d}: {rate * len(tiles) / len(wins):7.2f} tiles/s")
  out["batch_size"] = batch_size
  out["tiles_per_s"] = out["by_batch"][str(batch_size)]["tiles_per_s"]

  loaded = tf.saved_model.load(model_dir)  # Keep it referenced: its variables die with it.
  serve = loaded.signatures["serving_default"]

  def call_serving(im, ma, **extra):
    ex = [tfx.serialize_example(a, b, **{k: v[j] for k, v in extra.items()})
          for j, (a, b) in enumerate(zip(im, ma))]
    res = serve(examples=tf.constant(ex))["restored"]
    return [tf.make_ndarray(tf.make_tensor_proto(r)) for r in res.numpy()]

  if xla:  # XLA on CPU: one compilation per batch shape, so only with fixed batches.
    restore = loaded.signatures["restore"]
    jit = tf.function(lambda i, m, e: restore(image=i, mask=m, **e)["restored"], jit_compile=True,
                      autograph=False)
    x0, m0 = tf.constant(images[:batch_size]), tf.constant(masks[:batch_size])
    e0 = {k: tf.constant(v[:batch_size]) for k, v in feed.items()}
    t0 = time.perf_counter()
    ref = model(images[:batch_size], masks[:batch_size], **{k: v[:batch_size] for k, v in feed.items()})
    got = jit(x0, m0, e0).numpy()
    compile_s = time.perf_counter() - t0
    whole = (len(wins) // batch_size) * batch_size
    if whole:
      t0 = time.perf_counter()
      n = 0
      while time.perf_counter() - t0 < min_seconds or n == 0:
        for i in range(0, whole, batch_size):
          jit(tf.constant(images[i:i + batch_size]), tf.constant(masks[i:i + batch_size]),
              {k: tf.constant(v[i:i + batch_size]) for k, v in feed.items()}).numpy()
          n += batch_size
      rate = n / (time.perf_counter() - t0)
      out["xla_cpu"] = {"batch": batch_size, "windows_per_s": rate, "tiles_per_s": rate * len(tiles) / len(wins),
                        "first_call_seconds": compile_s, "max_abs_diff": float(np.abs(ref - got).max())}
      common.log(f"  raw restore   batch {batch_size:3d} XLA (jit_compile): "
                 f"{out['xla_cpu']['tiles_per_s']:7.2f} tiles/s (first call {compile_s:.1f} s, "
                 f"max |diff| {out['xla_cpu']['max_abs_diff']:.1e})")

  rate = loop(batch_size, call_serving)
  out["serving_default_tiles_per_s"] = rate * len(tiles) / len(wins)
  common.log(f"  raw serving_default (serialize + parse) batch {batch_size}: "
             f"{out['serving_default_tiles_per_s']:7.2f} tiles/s")
  return out


# --------------------------------------------------------------------------- (b) pipeline


def pipeline_argv(images: str, masks: str, output: str, backend: str, mode: str,
                  batch_size: int, workers: int, extra: Sequence[str] = ()) -> list[str]:
  argv = ["--images", images, "--masks", masks, "--output", output, "--config", "landsat8_l1",
          "--dilate", "0", "--overwrite", "--no-report", "--backend", backend,
          "--max-batch-size", str(batch_size), "--runner", "DirectRunner",
          f"--direct_running_mode={mode}"]
  if mode == "multi_processing":
    argv.append(f"--direct_num_workers={workers}")
  return argv + list(extra)


def worker(argv: Sequence[str]) -> int:
  """Runs the pipeline once in this process and prints its timings as JSON."""
  t_imp = time.perf_counter()
  from pipeline import options as cli_options  # pylint: disable=import-outside-toplevel
  from pipeline import summary as summary_lib  # pylint: disable=import-outside-toplevel
  from pipeline.run import run  # pylint: disable=import-outside-toplevel
  import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  imports = time.perf_counter() - t_imp
  args, _ = cli_options.parse(argv)
  t0 = time.perf_counter()
  result = run(argv)
  state = result.wait_until_finish()
  seconds = time.perf_counter() - t0
  with open(os.path.join(args.output, summary_lib.SUMMARY), encoding="utf-8") as f:
    summary = json.load(f)
  beam_metrics = {}
  try:
    q = result.metrics().query()
    for c in q.get("counters", []):
      beam_metrics[f"{c.key.metric.namespace}:{c.key.metric.name}"] = c.committed
    for d in q.get("distributions", []):
      v = d.committed
      if v is not None and v.count:
        beam_metrics[f"{d.key.metric.namespace}:{d.key.metric.name}"] = {
            "count": v.count, "mean": v.sum / v.count, "min": v.min, "max": v.max}
  except Exception as e:  # pylint: disable=broad-except
    beam_metrics["error"] = str(e)
  print(RESULT_TAG + json.dumps({
      "state": str(state), "seconds": seconds, "import_seconds": imports,
      "restored": summary["counts"]["restored"], "counts": summary["counts"],
      "seconds_per_tile": summary.get("seconds_per_tile"),
      "maxrss_mib_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "maxrss_mib_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
      "beam_metrics": beam_metrics}), flush=True)
  return 0


def run_worker(argv: Sequence[str], log_path: str, timeout: float,
               wrap: Sequence[str] = ()) -> dict[str, Any]:
  """Runs :func:`worker` in a fresh interpreter; returns its JSON and wall seconds."""
  cmd = [*wrap, sys.executable, "-m", "benchmarks.speed", "--worker", "--", *argv]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  t0 = time.perf_counter()
  with open(log_path, "w", encoding="utf-8") as log:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                          timeout=timeout, check=False)
  wall = time.perf_counter() - t0
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT_TAG)]
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f"pipeline run failed (exit {proc.returncode}); see {log_path}")
  out = json.loads(lines[-1][len(RESULT_TAG):])
  out["process_wall_seconds"] = wall
  out["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  out["maxrss_mib_process_tree"] = after.ru_maxrss / 1024
  return out


def bench_pipeline(images: str, masks: str, n_tiles: int, work: str, batch_size: int,
                   configs: Sequence[tuple[str, str]], workers: int, startup_probe: Optional[tuple[str, str]],
                   timeout: float) -> dict[str, Any]:
  """Restored tiles per second through ``pipeline.run.run`` for each (mode, backend)."""
  out: dict[str, Any] = {"runs": []}
  for mode, backend in configs:
    output = os.path.join(work, f"out_{mode}_{backend}")
    shutil.rmtree(output, ignore_errors=True)
    argv = pipeline_argv(images, masks, output, backend, mode, batch_size, workers)
    common.log(f"  pipeline {mode:16s} {backend:6s} ...")
    r = run_worker(argv, os.path.join(work, f"log_{mode}_{backend}.txt"), timeout)
    r.update(mode=mode, backend=backend, workers=workers if mode == "multi_processing" else 1,
             tiles_per_s=r["restored"] / r["seconds"], loadavg_after=common.loadavg())
    if r["restored"] != n_tiles:
      r["warning"] = f"restored {r['restored']} of {n_tiles} tiles"
    out["runs"].append(r)
    common.log(f"  pipeline {mode:16s} {backend:6s}: {r['tiles_per_s']:7.2f} tiles/s "
               f"({r['restored']} tiles in {r['seconds']:.1f} s; + {r['import_seconds']:.1f} s imports, "
               f"process {r['process_wall_seconds']:.1f} s; load {r['loadavg_after']})")
  if startup_probe:
    mode, backend = startup_probe
    small_dir = os.path.join(work, "probe_tiles")
    probe_imgs = os.path.join(small_dir, "images")
    os.makedirs(probe_imgs, exist_ok=True)
    src = sorted(n for n in os.listdir(os.path.dirname(images)) if n.endswith(".tif"))[:2]
    for name in src:
      shutil.copy(os.path.join(os.path.dirname(images), name), os.path.join(probe_imgs, name))
    output = os.path.join(work, "out_probe")
    shutil.rmtree(output, ignore_errors=True)
    argv = pipeline_argv(os.path.join(probe_imgs, "*.tif"), masks, output, backend, mode,
                         batch_size, workers)
    r = run_worker(argv, os.path.join(work, "log_probe.txt"), timeout)
    full = next(x for x in out["runs"] if (x["mode"], x["backend"]) == (mode, backend))
    marginal = ((full["restored"] - r["restored"]) / (full["seconds"] - r["seconds"])
                if full["seconds"] > r["seconds"] else None)
    out["startup"] = {"mode": mode, "backend": backend, "tiles": r["restored"],
                      "seconds": r["seconds"], "marginal_tiles_per_s": marginal}
    common.log(f"  start-up probe ({mode}, {backend}): {r['restored']} tiles in {r['seconds']:.1f} s; "
               f"marginal rate {_fmt_rate(marginal)} tiles/s")
  return out


# --------------------------------------------------------------------------- (c) fillers


def _fillers() -> tuple[dict[str, Callable], str]:
  """The classical fillers: ``benchmarks/fillers.py`` when present, else GDAL directly."""
  try:
    from benchmarks import fillers  # pylint: disable=import-outside-toplevel
  except ImportError:
    fillers = None
  if fillers is not None:
    found = {}
    registry = getattr(fillers, "FILLERS", None)
    if isinstance(registry, dict):
      found = dict(registry)
    else:
      for name in dir(fillers):
        fn = getattr(fillers, name)
        if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", "") == fillers.__name__ \
            and ("fill" in name.lower() or name.lower() in ("telea", "ns", "biharmonic", "mean")):
          found[name] = fn
    if found:
      return found, "benchmarks/fillers.py"

  def gdal_fillnodata(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from rasterio.fill import fillnodata  # pylint: disable=import-outside-toplevel
    out = image.copy()
    for c in range(image.shape[2]):
      out[:, :, c] = fillnodata(image[:, :, c], mask=(~mask).astype(np.uint8), max_search_distance=100)
    return out

  def mean_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[mask] = image[~mask].mean(axis=0)
    return out

  return {"gdal_fillnodata": gdal_fillnodata, "mean": mean_fill}, "built-in fallback (fillers.py absent)"


def bench_fillers(tiles, slow_limit: int, budget_s: float) -> dict[str, Any]:
  """Tiles/s of each classical filler on one thread (float32 0…1 input, like the model's)."""
  from transforms.window import to_unit  # pylint: disable=import-outside-toplevel
  try:
    import cv2  # pylint: disable=import-outside-toplevel
    cv2.setNumThreads(1)
  except ImportError:
    pass
  fns, source = _fillers()
  out: dict[str, Any] = {"source": source, "threads": 1, "by_filler": {}}
  data = [(to_unit(t["image"], *VALUE_RANGE), t["mask"]) for t in tiles]
  for name, fn in fns.items():
    times = []
    start = time.perf_counter()
    for i, (img, m) in enumerate(data):
      t0 = time.perf_counter()
      try:
        fn(img, m)
      except Exception as e:  # pylint: disable=broad-except
        out["by_filler"][name] = {"error": f"{type(e).__name__}: {e}"}
        break
      times.append(time.perf_counter() - t0)
      # Slow fillers (biharmonic: seconds per tile) are timed on fewer tiles.
      if time.perf_counter() - start > budget_s and i + 1 >= min(slow_limit, len(data)):
        break
    if times:
      out["by_filler"][name] = {"tiles": len(times), "seconds_per_tile_median": statistics.median(times),
                                "tiles_per_s": len(times) / sum(times)}
      common.log(f"  filler {name:22s}: {len(times) / sum(times):8.2f} tiles/s ({len(times)} tiles)")
  gdal = [k for k in out["by_filler"] if "gdal" in k.lower() or "fillnodata" in k.lower()]
  out["gdal_key"] = gdal[0] if gdal else None
  return out


# --------------------------------------------------------------------------- candidate fixes
# Timed beside the pipeline's own steps, to size what each proposed fix would save.


def serialize_example_wire(image: np.ndarray, mask: np.ndarray) -> bytes:
  """The tfx backend's wire-format Example (now what the pipeline uses)."""
  from model_loader.tfx import serialize_example  # pylint: disable=import-outside-toplevel
  return serialize_example(image, mask)


def encode_tiff_with(image: np.ndarray, profile: dict[str, Any], **options) -> bytes:
  """``transforms.raster_io``'s GeoTIFF encoding with other creation options."""
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  from transforms import raster_io  # pylint: disable=import-outside-toplevel
  h, w, c = image.shape
  kwargs = raster_io.tiff_write_kwargs(profile, h, w, c)
  kwargs.update(options)
  with MemoryFile() as mem:
    with mem.open(**kwargs) as dst:
      dst.write(np.moveaxis(image, -1, 0))
    return mem.read()


# --------------------------------------------------------------------------- stage costs


def bench_stages(tiles, images_glob: str, masks_tpl: str, model_dir: str, batch_size: int,
                 work: str, min_seconds: float) -> dict[str, Any]:
  """Each pipeline step's cost per tile (ms, median over tiles), in-process."""
  # pylint: disable=import-outside-toplevel
  import apache_beam as beam
  from model_loader import native, tfx
  from transforms.composite import composite, window_result
  from transforms.decode import DecodeSpec, decode_pair
  from transforms.masks import MaskSpec
  from transforms.match import mask_path_for
  from transforms.raster_io import encode_raster, write_bytes_atomic
  from transforms.records import TilePair
  from transforms.window import WindowSpec, cut, tile_context
  from transforms.write import WriteSpec, measure
  from transforms.records import RestoredTile
  import tensorflow as tf

  card = _card(model_dir)
  model = native.LoadedModel(model_dir)
  coder = beam.coders.registry.get_coder(object)
  spec = DecodeSpec(mask=MaskSpec(source="file"), model_bands=card.bands)
  wspec = WindowSpec(size=card.window, overlap=card.overlap, value_range=VALUE_RANGE)
  out_dir = os.path.join(work, "stages_out")
  steps: dict[str, list[float]] = collections.defaultdict(list)
  folder = os.path.dirname(images_glob)
  sample = tiles[:min(len(tiles), 24)]
  for t in sample:
    path = os.path.join(folder, t["name"] + ".tif")
    pair = TilePair(path, t["name"], mask_path_for(path, masks_tpl))

    def timed(name, fn, *a):
      t0 = time.perf_counter()
      r = fn(*a)
      steps[name].append(1000 * (time.perf_counter() - t0))
      return r

    tile = timed("decode", decode_pair, pair, spec)
    fill, mapped = timed("tile_context", tile_context, tile, wspec)
    wins = timed("cut", lambda: list(cut(tile, wspec, fill, mapped)))
    feed = _stacked(wins, ("image", "mask") + model.input_names)
    restored = model(feed.pop("image"), feed.pop("mask"), **feed)
    results = timed("sparsify", lambda: [window_result(w, r, card.overlap, "context" in model.input_names)
                                         for w, r in zip(wins, restored)])
    wins = [dataclasses.replace(w, restored=r) for w, r in zip(wins, restored)]
    timed("tfx_example_serialize", lambda: [tfx.to_example(w.image, w.mask).SerializeToString()
                                            for w in wins])
    wire = timed("fix_tfx_example_wire_format", lambda: [serialize_example_wire(w.image, w.mask)
                                                         for w in wins])
    # Same message (byte order of map entries may differ: protobuf leaves it open).
    if tf.train.Example.FromString(wire[0]) != tfx.to_example(wins[0].image, wins[0].mask):
      steps["fix_tfx_example_wire_format_NOT_EQUAL"].append(0.0)
    timed("tfx_response_to_array", lambda: [tf.make_ndarray(tf.make_tensor_proto(w.restored))
                                            for w in wins])
    timed("coder_tile_and_results_at_join", lambda: (coder.decode(coder.encode((tile.key, tile))),
                                                     [coder.decode(coder.encode((tile.key, r)))
                                                      for r in results]))
    filled = timed("composite", composite, tile.image, tile.mask, results, VALUE_RANGE, 0)
    out_path = os.path.join(out_dir, t["name"] + ".tif")
    timed("encode_and_write", lambda: write_bytes_atomic(
        out_path, encode_raster(filled, tile.profile, {"CLOUDFILL_MODEL_VERSION": card.version})))
    if hasattr(__import__("transforms.raster_io", fromlist=["x"]), "tiff_write_kwargs"):
      timed("fix_encode_deflate_zlevel1", lambda: encode_tiff_with(filled, tile.profile, zlevel=1))
      timed("fix_encode_zstd_level1", lambda: encode_tiff_with(filled, tile.profile, compress="zstd",
                                                               zstd_level=1))
      timed("encode_only_default", lambda: encode_tiff_with(filled, tile.profile))
    item = RestoredTile(tile=tile, restored=filled, windows=len(wins))
    timed("measure", measure, item, WriteSpec(output_dir=out_dir, model_version=card.version))
    timed("measure_with_evaluate", measure, item,
          WriteSpec(output_dir=out_dir, model_version=card.version, evaluate=True))
  # The model's own time per tile at the pipeline's batch size, on these tiles' windows.
  wins = _windows(sample, card.window, card.overlap)
  feed = _stacked(wins, ("image", "mask") + model.input_names)
  ims, mss = feed.pop("image"), feed.pop("mask")
  model(ims[:batch_size], mss[:batch_size], **{k: v[:batch_size] for k, v in feed.items()})

  def all_batches():
    for i in range(0, len(wins), batch_size):
      model(ims[i:i + batch_size], mss[i:i + batch_size], **{k: v[i:i + batch_size] for k, v in feed.items()})

  sec, _ = _timeit(all_batches, min_seconds=min_seconds, min_runs=2)
  model_ms = 1000 * sec / len(sample)
  med = {k: statistics.median(v) for k, v in steps.items()}
  native_path = ("decode", "tile_context", "cut", "sparsify", "coder_tile_and_results_at_join", "composite",
                 "encode_and_write", "measure")
  overhead = sum(med[k] for k in native_path)
  tfx_extra = med["tfx_example_serialize"] + med["tfx_response_to_array"]
  out = {"tiles": len(sample), "ms_per_tile": med, "model_ms_per_tile": model_ms,
         "native_overhead_ms_per_tile": overhead,
         "predicted_native_ratio_serial": model_ms / (model_ms + overhead),
         "tfx_extra_ms_per_tile": tfx_extra,
         "predicted_tfx_ratio_serial": model_ms / (model_ms + overhead + tfx_extra)}
  common.log(f"  model {model_ms:.1f} ms/tile (batch {batch_size}); per-tile steps (ms, median):")
  for k, v in sorted(med.items(), key=lambda kv: -kv[1]):
    common.log(f"    {k:32s} {v:8.2f}  ({100 * v / model_ms:5.1f} % of the model's time)")
  common.log(f"  native path overhead {overhead:.1f} ms/tile -> serial ceiling "
             f"{100 * out['predicted_native_ratio_serial']:.0f} % of the raw loop")
  if "fix_encode_zstd_level1" in med:
    saved = med["encode_only_default"] - med["fix_encode_zstd_level1"]
    fixed = overhead - saved
    out["native_overhead_with_zstd1_ms_per_tile"] = fixed
    out["predicted_native_ratio_serial_with_zstd1"] = model_ms / (model_ms + fixed)
    tfx_fixed = med["fix_tfx_example_wire_format"] + med["tfx_response_to_array"]
    out["predicted_tfx_ratio_serial_with_wire_format_and_zstd1"] = model_ms / (model_ms + fixed + tfx_fixed)
    common.log(f"  with zstd level 1 GeoTIFFs: overhead {fixed:.1f} ms/tile -> ceiling "
               f"{100 * out['predicted_native_ratio_serial_with_zstd1']:.0f} %; tfx with wire-format "
               f"Examples too: {100 * out['predicted_tfx_ratio_serial_with_wire_format_and_zstd1']:.0f} % "
               f"(now {100 * out['predicted_tfx_ratio_serial']:.0f} %)")
  return out


# --------------------------------------------------------------------------- profile


PROFILE_BUCKETS = (  # (bucket, substrings of a py-spy frame "Class.func (path:line)"), leaf up.
    ("imports", ("_find_and_load",)),
    ("model: restore signature (TF)", ("LoadedModel.__call__ (model_loader", "run_inference (model_loader")),
    ("model: tfx-bsl", ("tfx_bsl",)),
    ("model load + launch check", ("LoadedModel.__init__", "load_model (model_loader", "check_model_early",
                                   "check_model (model_loader", "stage_locally")),
    ("decode (read + GDAL/PIL decode + mask)", ("decode_pair (transforms",)),
    ("cut windows", ("cut (transforms/window.py",)),
    ("sparsify", ("sparsify (transforms",)),
    ("composite", ("composite (transforms/composite.py", "blend (transforms")),
    ("encode + write GeoTIFF", ("encode_raster (transforms", "write_bytes_atomic (transforms")),
    ("measure (metrics)", ("measure (transforms/write.py",)),
    ("tfx: to_example", ("to_example (model_loader",)),
    ("beam coders / pickling", ("apache_beam/coders/", "pickle", "dill", "cloudpickle")),
    ("batching (BatchElements)", ("BatchElements", "_BatchSizeEstimator", "BatchingDoFn")),
    ("matching files", ("MatchFiles", "apache_beam/io/fileio", "PairWithMask")),
    ("graph construction", ("build (pipeline/run.py",)),
)


def attribute_profile(raw: str) -> tuple[dict[str, float], int]:
  """Shares of a py-spy ``--format raw`` profile per pipeline step (main thread)."""
  buckets: collections.Counter = collections.Counter()
  with open(raw, encoding="utf-8", errors="replace") as f:
    for line in f:
      stack, _, count = line.rstrip("\n").rpartition(" ")
      if not count.isdigit():
        continue
      n = int(count)
      frames = stack.split(";")
      # The in_memory runner processes bundles on the main thread: keep its
      # samples (busy or waiting on TensorFlow's threads), drop Beam's idle
      # service threads (gRPC, data plane).
      # Only the timed region: pipeline.run.run() (the in_memory runner runs
      # the whole pipeline inside it); the worker's own imports are excluded.
      if not any(fr.startswith("run (") and "pipeline/run.py" in fr or fr.startswith("run (run.py")
                 for fr in frames):
        continue
      in_bundle = any("process_bundle" in fr for fr in frames)
      label = "other: Beam runner (in bundles)" if in_bundle else "other: Beam runner start/finish"
      for fr in reversed(frames):
        hit = next((b for b, keys in PROFILE_BUCKETS if any(k in fr for k in keys)), None)
        if hit:
          label = hit
          break
      buckets[label] += n
  total = sum(buckets.values()) or 1
  return {k: v / total for k, v in buckets.most_common()}, total


def bench_profile(images: str, masks: str, work: str, batch_size: int, rate: int,
                  timeout: float) -> dict[str, Any]:
  """A py-spy profile of one in_memory native run, attributed to pipeline steps."""
  pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
  if not os.path.exists(pyspy):
    common.log("  py-spy not installed (pip install py-spy): no profile")
    return {"error": "py-spy not installed"}
  raw = os.path.join(work, "profile.txt")
  output = os.path.join(work, "out_profile")
  shutil.rmtree(output, ignore_errors=True)
  argv = pipeline_argv(images, masks, output, "native", "in_memory", batch_size, 1)
  r = run_worker(argv, os.path.join(work, "log_profile.txt"), timeout,
                 wrap=[pyspy, "record", "--rate", str(rate), "--format", "raw", "--idle",
                       "--output", raw, "--"])
  share, total = attribute_profile(raw)
  common.log(f"  py-spy profile ({r['restored']} tiles, {r['seconds']:.1f} s, main thread, "
             f"{total} samples at {rate} Hz incl. waits):")
  for k, v in share.items():
    common.log(f"    {k:45s} {100 * v:5.1f} %")
  return {"samples": total, "rate_hz": rate, "share": share, "run": r, "raw_profile": raw}


# --------------------------------------------------------------------------- GPU


def bench_gpu(tiles, model_dir: str, batches: Sequence[int], min_seconds: float,
              force: bool = False) -> dict[str, Any]:
  """Batch size x XLA sweep of the SavedModel, and mixed precision, on a GPU."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus and not force:
    common.log("  no GPU visible to TensorFlow: GPU sweep skipped")
    return {"gpu": None, "note": "TensorFlow found no GPU on this machine"}
  out: dict[str, Any] = {"gpu": None, "sweep": [], "mixed_precision": []}
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    out["gpu"] = details.get("device_name", gpus[0].name)
    out["compute_capability"] = details.get("compute_capability")
    for g in gpus:
      try:
        tf.config.experimental.set_memory_growth(g, True)
      except RuntimeError:
        pass
  card = _card(model_dir)
  wins = _windows(tiles, card.window, card.overlap)
  reps = max(1, 256 // max(1, len(wins)))
  images = np.concatenate([np.stack([w.image for w in wins])] * reps)
  masks = np.concatenate([np.stack([w.mask for w in wins])] * reps)
  loaded = tf.saved_model.load(model_dir)  # Keep it referenced: its variables die with it.
  fn = loaded.signatures["restore"]
  plain = lambda i, m: fn(image=i, mask=m)["restored"]  # noqa: E731
  xla = tf.function(plain, jit_compile=True)
  for bs in batches:
    for name, f in (("off", plain), ("on", xla)):
      x = tf.constant(images[:bs])
      m = tf.constant(masks[:bs])
      try:
        f(x, m).numpy()  # Compile / warm up.

        def run_all():
          for i in range(0, len(images) - bs + 1, bs):
            f(tf.constant(images[i:i + bs]), tf.constant(masks[i:i + bs])).numpy()
        sec, _ = _timeit(run_all, min_seconds=min_seconds, min_runs=2)
        n = (len(images) // bs) * bs
        row = {"batch": bs, "xla": name, "windows_per_s": n / sec}
      except Exception as e:  # pylint: disable=broad-except
        row = {"batch": bs, "xla": name, "error": f"{type(e).__name__}: {str(e)[:200]}"}
      out["sweep"].append(row)
      common.log(f"  GPU batch {bs:4d} XLA {name:3s}: "
                 + (f"{row['windows_per_s']:9.1f} windows/s" if "windows_per_s" in row else row["error"]))
  # Mixed precision needs the model rebuilt under the policy (an exported float32
  # SavedModel cannot be switched): same architecture, random weights.
  try:
    import keras  # pylint: disable=import-outside-toplevel
    from training.generator import build_generator  # pylint: disable=import-outside-toplevel
    bs = max(batches)
    for policy in ("float32", "mixed_float16"):
      keras.mixed_precision.set_global_policy(policy)
      gen = build_generator(bands=card.bands)
      call = tf.function(lambda i, m, g=gen: g([i, m], training=False))
      x, m = tf.constant(images[:bs]), tf.constant(masks[:bs])
      call(x, m)
      sec, _ = _timeit(lambda: call(x, m).numpy(), min_seconds=min_seconds, min_runs=3)
      out["mixed_precision"].append({"policy": policy, "batch": bs, "windows_per_s": bs / sec})
      common.log(f"  GPU generator {policy:14s} batch {bs}: {bs / sec:9.1f} windows/s")
    keras.mixed_precision.set_global_policy("float32")
  except Exception as e:  # pylint: disable=broad-except
    out["mixed_precision_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    common.log(f"  mixed precision not measured: {out['mixed_precision_error']}")
  return out


# --------------------------------------------------------------------------- large scenes


def make_scene(size: int, folder: str, seed: int = 0) -> tuple[str, str, dict[str, Any]]:
  """A ``size`` x ``size`` x 3 uint16 GeoTIFF mirrored up from the real scene, and a
  cloud mask tiled from real masks (2x upscaled, flipped/rotated). Cached in ``folder``."""
  import rasterio  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  name = f"scene_{size}"
  img_path = os.path.join(folder, "images", name + ".tif")
  mask_path = os.path.join(folder, "masks", name + ".png")
  meta_path = os.path.join(folder, name + ".json")
  if os.path.exists(img_path) and os.path.exists(mask_path) and os.path.exists(meta_path):
    with open(meta_path, encoding="utf-8") as f:
      return img_path, mask_path, json.load(f)
  os.makedirs(os.path.dirname(img_path), exist_ok=True)
  os.makedirs(os.path.dirname(mask_path), exist_ok=True)
  if os.path.exists(common.SCENE):
    with rasterio.open(common.SCENE) as src:
      base = np.moveaxis(src.read(), 0, -1)[common.SCENE_CLEAN_ROW:]
      crs, transform, desc = src.crs, src.transform, src.descriptions
    source = f"{os.path.basename(common.SCENE)} rows {common.SCENE_CLEAN_ROW}: mirrored"
  else:
    with rasterio.open(sorted(__import__("glob").glob(os.path.join(common.SAMPLE, "images", "*.tif")))[0]) as src:
      base = np.moveaxis(src.read(), 0, -1)
      crs, transform, desc = src.crs, src.transform, src.descriptions
    source = "sample tile mirrored"
  image = np.pad(base, ((0, max(0, size - base.shape[0])), (0, max(0, size - base.shape[1])), (0, 0)),
                 mode="symmetric")[:size, :size]
  rng = np.random.default_rng(seed)
  masks = common.real_masks()
  big = [m for m in masks if min(m.shape) >= 256] or masks
  block = 1024
  mask = np.zeros((size, size), bool)
  for y in range(0, size, block):
    for x in range(0, size, block):
      m = big[int(rng.integers(0, len(big)))]
      m = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((block, block), Image.NEAREST)) > 127
      m = np.rot90(m, int(rng.integers(0, 4)))
      mask[y:y + block, x:x + block] = m[:min(block, size - y), :min(block, size - x)]
  with rasterio.open(img_path, "w", driver="GTiff", height=size, width=size, count=3, dtype="uint16",
                     crs=crs, transform=transform, nodata=0, compress="deflate", tiled=True,
                     blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER") as dst:
    dst.write(np.moveaxis(image, -1, 0))
    for i, d in enumerate(desc or [], start=1):
      if d:
        dst.set_band_description(i, d)
  Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
  meta = {"size": size, "coverage": float(mask.mean()), "source": source,
          "bytes_on_disk": os.path.getsize(img_path)}
  with open(meta_path, "w", encoding="utf-8") as f:
    json.dump(meta, f)
  return img_path, mask_path, meta


def bench_large(sizes: Sequence[int], work: str, batch_size: int, timeout: float,
                backend: str = "native", scene_pixels: Optional[int] = None) -> dict[str, Any]:
  """Wall seconds and peak RSS of ``cloudfill run`` on one large scene per size."""
  from pipeline import options as cli_options  # pylint: disable=import-outside-toplevel
  threshold = scene_pixels or cli_options.DEFAULTS.get("scene_pixels")
  extra = ["--scene-pixels", str(scene_pixels)] if scene_pixels else []
  scenes = os.path.join(work, "scenes")
  rows = []
  for size in sizes:
    t0 = time.perf_counter()
    img, _, meta = make_scene(size, scenes)
    made = time.perf_counter() - t0
    output = os.path.join(work, f"out_large_{size}")
    shutil.rmtree(output, ignore_errors=True)
    stem = os.path.splitext(os.path.basename(img))[0]
    images = os.path.join(os.path.dirname(img), stem + ".tif")
    masks = os.path.join(scenes, "masks", "{stem}.png")
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *pipeline_argv(
        images, masks, output, backend, "in_memory", batch_size, 1, extra)]
    common.log(f"  large {size}x{size}: scene ready ({made:.0f} s, coverage {meta['coverage']:.1%}); "
               "cloudfill run ...")
    # Each run's own peak: GNU time's %M when present (getrusage(RUSAGE_CHILDREN)
    # only gives the largest child so far, which may be an earlier size's).
    gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    rss_file = os.path.join(work, f"maxrss_{size}.txt")
    if gnu_time:
      cmd = [gnu_time, "-f", "%M", "-o", rss_file, *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t1 = time.perf_counter()
    with open(os.path.join(work, f"log_large_{size}.txt"), "w", encoding="utf-8") as log:
      proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), check=False)
    wall = time.perf_counter() - t1
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kib = after.ru_maxrss
    peak_source = "getrusage(RUSAGE_CHILDREN): largest child so far"
    if gnu_time and os.path.exists(rss_file):
      with open(rss_file, encoding="utf-8") as f:
        digits = [l.strip() for l in f if l.strip().isdigit()]
      if digits:
        peak_kib, peak_source = int(digits[-1]), "/usr/bin/time %M of this run"
    row: dict[str, Any] = {"size": size, "pixels": size * size, "coverage": meta["coverage"],
                           "exit": proc.returncode, "process_wall_seconds": wall,
                           "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                           "peak_rss_mib": peak_kib / 1024, "peak_rss_source": peak_source,
                           "input_mib": size * size * 3 * 2 / 2**20, "loadavg_after": common.loadavg(),
                           # GeoTIFFs above --scene-pixels are streamed by rows (transforms/scenes.py).
                           "path": ("scene (streamed by rows)" if threshold and size * size > threshold
                                    else "tile (decoded whole)")}
    summary_path = os.path.join(output, "summary.json")
    if os.path.exists(summary_path):
      with open(summary_path, encoding="utf-8") as f:
        s = json.load(f)
      row["pipeline_wall_seconds"] = s.get("wall_seconds")
      row["counts"] = s.get("counts")
      row["seconds_per_tile"] = {k: v["mean"] for k, v in (s.get("seconds_per_tile") or {}).items() if v}
      with open(os.path.join(output, "metrics", os.listdir(os.path.join(output, "metrics"))[0]),
                encoding="utf-8") as f:
        m = json.loads(f.readline())["metrics"] if os.path.getsize(f.name) else {}
      row["windows"] = m.get("windows")
      if row.get("pipeline_wall_seconds") and row["windows"]:
        row["windows_per_s"] = row["windows"] / row["pipeline_wall_seconds"]
    rows.append(row)
    common.log(f"  large {size}x{size} [{row['path']}]: exit {proc.returncode}, {wall:.1f} s process "
               f"({row.get('pipeline_wall_seconds')} s pipeline), peak RSS {row['peak_rss_mib']:.0f} MiB "
               f"(input {row['input_mib']:.0f} MiB), {row.get('windows')} windows, "
               f"stages {row.get('seconds_per_tile')}")
  if len(rows) >= 2 and all(r.get("pipeline_wall_seconds") for r in rows):
    px = np.log([r["pixels"] for r in rows])
    return {"runs": rows, "scene_pixels_threshold": threshold,
            "time_exponent": float(np.polyfit(px, np.log([r["pipeline_wall_seconds"] for r in rows]), 1)[0]),
            "rss_exponent": float(np.polyfit(px, np.log([r["peak_rss_mib"] for r in rows]), 1)[0])}
  return {"runs": rows, "scene_pixels_threshold": threshold}


# --------------------------------------------------------------------------- markdown


def markdown(paths: Sequence[str]) -> str:
  """A Markdown digest of result JSON files (``--markdown a.json b.json``)."""
  out = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      r = json.load(f)
    m = r["machine"]
    out.append(f"## {os.path.basename(path)}\n")
    out.append(f"Machine: {m['cpu_model']}, {m['cpus_usable']} CPUs usable, {m['memory_gib']} GiB; "
               f"load average {m['loadavg_start']} at start, {m.get('loadavg_end')} at end; "
               f"other heavy processes at start: {len(m['other_heavy_processes'])}; "
               f"started {m['utc_start']}; commit {m['git_commit']}; "
               f"model {r['model']['name']} {r['model']['version']}; batch size {r.get('batch_size')}.\n")
    if "tiles" in r:
      out.append(f"Tiles: {r['tiles']['source']}; mean coverage {r['tiles']['coverage_mean']:.1%}.\n")
    if "raw" in r:
      raw = r["raw"]
      out.append("| raw loop | tiles/s |\n|---|---|")
      for bs, v in raw["by_batch"].items():
        out.append(f"| restore, batch {bs} | {v['tiles_per_s']:.2f} |")
      if raw.get("xla_cpu"):
        x = raw["xla_cpu"]
        out.append(f"| restore under XLA (jit_compile), batch {x['batch']} | {x['tiles_per_s']:.2f} "
                   f"(first call {x['first_call_seconds']:.0f} s) |")
      out.append(f"| serving_default + Example (de)serialisation, batch {raw['batch_size']} | "
                 f"{raw['serving_default_tiles_per_s']:.2f} |\n")
    if "pipeline" in r:
      out.append("| pipeline (DirectRunner) | backend | tiles/s | % of raw | goal 85 % | >= GDAL 1 core "
                 "| run() s | imports s | process s | batch mean |\n|---|---|---|---|---|---|---|---|---|---|")
      for p in r["pipeline"]["runs"]:
        bm = p.get("beam_metrics", {}).get("BatchElements:batch_size", {})
        ratio = p.get("ratio_to_raw")
        out.append(f"| {p['mode']} x{p['workers']} | {p['backend']} | {p['tiles_per_s']:.2f} | "
                   f"{'' if ratio is None else f'{100 * ratio:.0f} %'} | "
                   f"{'met' if p.get('goal_85pct_of_raw') else 'not met'} | "
                   f"{'met' if p.get('goal_ge_gdal_1core') else 'not met'} | {p['seconds']:.1f} | "
                   f"{p['import_seconds']:.1f} | {p['process_wall_seconds']:.1f} | "
                   f"{bm.get('mean', float('nan')):.1f} |")
      out.append("")
      st = r["pipeline"].get("startup")
      if st:
        out.append(f"\nStart-up probe ({st['mode']}, {st['backend']}): {st['tiles']} tiles in "
                   f"{st['seconds']:.1f} s; marginal rate {st.get('marginal_tiles_per_s') or 0:.2f} tiles/s"
                   + (f" = {100 * st['marginal_ratio_to_raw']:.0f} % of raw" if st.get("marginal_ratio_to_raw")
                      else "") + ".\n")
    if "fillers" in r:
      out.append(f"| filler ({r['fillers']['source']}, 1 thread) | tiles/s | tiles timed |\n|---|---|---|")
      for k, v in r["fillers"]["by_filler"].items():
        out.append(f"| {k} | {v.get('tiles_per_s', float('nan')):.2f} | {v.get('tiles', '')} |")
      out.append("")
    if "stages" in r:
      st = r["stages"]
      out.append(f"Per-step cost per tile (ms, median of {st['tiles']} tiles; model "
                 f"{st['model_ms_per_tile']:.1f} ms/tile at the pipeline's batch size):\n")
      out.append("| step | ms/tile | % of model |\n|---|---|---|")
      for k, v in sorted(st["ms_per_tile"].items(), key=lambda kv: -kv[1]):
        out.append(f"| {k} | {v:.2f} | {100 * v / st['model_ms_per_tile']:.1f} % |")
      out.append(f"\nNative path overhead {st['native_overhead_ms_per_tile']:.1f} ms/tile: serial ceiling "
                 f"{100 * st['predicted_native_ratio_serial']:.0f} % of the raw loop "
                 f"(tfx: {100 * st['predicted_tfx_ratio_serial']:.0f} %)."
                 + (f" With zstd level 1 GeoTIFFs: {100 * st['predicted_native_ratio_serial_with_zstd1']:.0f} %;"
                    f" tfx with wire-format Examples and zstd: "
                    f"{100 * st['predicted_tfx_ratio_serial_with_wire_format_and_zstd1']:.0f} %."
                    if "predicted_native_ratio_serial_with_zstd1" in st else "") + "\n")
    if "profile" in r and "share" in r["profile"]:
      out.append(f"py-spy profile of one in_memory native run ({r['profile']['run']['restored']} tiles, "
                 f"{r['profile']['run']['seconds']:.1f} s):\n\n| where | share |\n|---|---|")
      for k, v in r["profile"]["share"].items():
        out.append(f"| {k} | {100 * v:.1f} % |")
      out.append("")
    if "gpu" in r:
      g = r["gpu"]
      out.append(f"GPU: {g.get('gpu') or g.get('note')}\n")
      for row in g.get("sweep", []):
        out.append(f"- batch {row['batch']}, XLA {row['xla']}: "
                   + (f"{row['windows_per_s']:.1f} windows/s" if "windows_per_s" in row else row["error"]))
      if g.get("mixed_precision_error"):
        out.append(f"- mixed precision: {g['mixed_precision_error'][:160]}")
      out.append("")
    if "large" in r:
      lg = r["large"]
      out.append("| scene | path | coverage | windows | pipeline s | process s | peak RSS MiB | input MiB "
                 "| windows/s |\n|---|---|---|---|---|---|---|---|---|")
      for row in lg["runs"]:
        out.append(f"| {row['size']}² | {row.get('path')} | {row['coverage']:.1%} | {row.get('windows')} | "
                   f"{row.get('pipeline_wall_seconds')} | {row['process_wall_seconds']:.1f} | "
                   f"{row['peak_rss_mib']:.0f} | {row['input_mib']:.0f} | "
                   f"{row.get('windows_per_s', float('nan')):.2f} |")
      if "time_exponent" in lg:
        out.append(f"\nTime grows as pixels^{lg['time_exponent']:.2f}, peak RSS as "
                   f"pixels^{lg['rss_exponent']:.2f} (log-log fit).\n")
  return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def _parse(argv: Optional[Sequence[str]]):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--tiles", type=int, default=32, help="Number of 256x256 tiles (default 32).")
  p.add_argument("--quick", action="store_true",
                 help="About 2 minutes on 2 idle cores: 8 tiles, in_memory pipelines only, 0.5 s "
                      "per measurement, no start-up probe, no XLA.")
  p.add_argument("--out", default=DEFAULT_OUT, help="Folder for the JSON results.")
  p.add_argument("--work", default=None, help="Scratch folder (default: a temporary one, removed).")
  p.add_argument("--model", default=None, help="SavedModel (default: model_loader/default_model).")
  p.add_argument("--batch-size", type=int, default=None,
                 help="The pipeline's max batch size (default: the landsat8_l1 config's).")
  p.add_argument("--sections", default="raw,pipeline,fillers,stages",
                 help="Comma list of raw,pipeline,fillers,stages,profile,gpu, or 'all'.")
  p.add_argument("--configs", default=",".join(f"{m}:{b}" for m, b in PIPELINE_CONFIGS),
                 help="Pipeline runs as mode:backend, comma-separated.")
  p.add_argument("--workers", type=int, default=2, help="--direct_num_workers for multi_processing.")
  p.add_argument("--min-seconds", type=float, default=3.0, help="Minimum time per raw/filler measurement.")
  p.add_argument("--no-startup-probe", action="store_true", help="Skip the 2-tile start-up run.")
  p.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second.")
  p.add_argument("--gpu-batches", default="1,4,8,16,32,64,128")
  p.add_argument("--gpu-anyway", action="store_true", help="Run the GPU section on CPU (to test it).")
  p.add_argument("--large", action="store_true", help="Time large scenes instead (see --sizes).")
  p.add_argument("--sizes", default="2000,4000,8000", help="Scene sides for --large.")
  p.add_argument("--scene-pixels", type=int, default=None,
                 help="With --large: the pipeline's --scene-pixels (default: its own, 4096*4096).")
  p.add_argument("--timeout", type=float, default=1800, help="Seconds per pipeline run.")
  p.add_argument("--tag", default=None, help="Suffix of the JSON file name.")
  return p.parse_args(argv)


def _goal_lines(res: dict[str, Any]) -> list[str]:
  lines = []
  raw = res.get("raw", {}).get("tiles_per_s")
  gd = res.get("fillers", {})
  gdal = gd.get("by_filler", {}).get(gd.get("gdal_key") or "", {}).get("tiles_per_s")
  for r in res.get("pipeline", {}).get("runs", []):
    ratio = r["tiles_per_s"] / raw if raw else None
    r["ratio_to_raw"] = ratio
    r["goal_85pct_of_raw"] = None if ratio is None else ratio >= GOAL_RATIO
    r["goal_ge_gdal_1core"] = None if gdal is None else r["tiles_per_s"] >= gdal
    lines.append(f"  {r['mode']:16s} {r['backend']:6s} {r['tiles_per_s']:7.2f} tiles/s = "
                 + (f"{100 * ratio:5.1f} % of raw ({'MET' if ratio >= GOAL_RATIO else 'NOT met'}: >= 85 %)"
                    if ratio else "raw n/a")
                 + (f"; GDAL {gdal:.2f} tiles/s: {'MET' if r['tiles_per_s'] >= gdal else 'NOT met'}"
                    if gdal else ""))
  st = res.get("pipeline", {}).get("startup")
  if st and st.get("marginal_tiles_per_s") and raw:
    st["marginal_ratio_to_raw"] = st["marginal_tiles_per_s"] / raw
    lines.append(f"  marginal (start-up excluded) {st['mode']} {st['backend']}: "
                 f"{st['marginal_tiles_per_s']:.2f} tiles/s = {100 * st['marginal_ratio_to_raw']:.1f} % of raw")
  return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] == "--worker":
    return worker(argv[2:] if len(argv) > 1 and argv[1] == "--" else argv[1:])
  if argv and argv[0] == "--markdown":
    print(markdown(argv[1:]), end="")
    return 0
  args = _parse(argv)
  if args.quick:
    args.tiles = min(args.tiles, 8)
    args.configs = "in_memory:native,in_memory:tfx"
    args.min_seconds = 0.5
    args.no_startup_probe = True
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.path.insert(0, ROOT)
  from model_loader import locate  # pylint: disable=import-outside-toplevel
  from pipeline import options as cli_options  # pylint: disable=import-outside-toplevel
  model_dir = locate.resolve(args.model)
  batch = args.batch_size or cli_options.load_config("landsat8_l1").get("max_batch_size", 16)
  sections = ({"raw", "pipeline", "fillers", "stages", "profile", "gpu"} if args.sections == "all"
              else set(args.sections.split(",")))
  res: dict[str, Any] = {"machine": common.machine()}
  m = res["machine"]
  common.log(f"machine: {m['cpu_model']}, {m['cpus_usable']} usable CPUs, {m['memory_gib']} GiB; "
             f"load average {m['loadavg_start']}; other heavy processes: {len(m['other_heavy_processes'])}")
  work = args.work or tempfile.mkdtemp(prefix="cloudfill-speed-")
  os.makedirs(work, exist_ok=True)
  card = _card(model_dir)
  res["model"] = {"dir": model_dir, "name": card.name, "version": card.version, "window": card.window}
  res["batch_size"] = batch
  common.log(f"model {card.name} {card.version} (window {card.window}); pipeline batch size {batch}; "
             f"scratch {work}")
  t_start = time.perf_counter()
  try:
    if args.large:
      sizes = [int(s) for s in args.sizes.split(",")]
      res["large"] = bench_large(sizes, work, batch, args.timeout, scene_pixels=args.scene_pixels)
      name = f"large{('_' + args.tag) if args.tag else ''}.json"
    else:
      tiles, source = common.make_tiles(args.tiles)
      res["tiles"] = {"count": len(tiles), "source": source,
                      "coverage_mean": float(np.mean([t["mask"].mean() for t in tiles]))}
      common.log(f"tiles: {source}; mean coverage {res['tiles']['coverage_mean']:.1%}")
      # One folder per tile set: the pipeline matches every file in it.
      images, masks = common.write_tiles(tiles, os.path.join(work, f"tiles_n{len(tiles)}"))
      if "raw" in sections:
        common.log("(a) raw SavedModel loop")
        res["raw"] = bench_raw(tiles, model_dir, batch, (1, 4, 16, 32), args.min_seconds,
                               xla=not args.quick)
      if "pipeline" in sections:
        common.log("(b) pipeline (DirectRunner), seconds from run() to wait_until_finish()")
        configs = [tuple(c.split(":")) for c in args.configs.split(",") if c]
        probe = None if args.no_startup_probe else configs[0]
        res["pipeline"] = bench_pipeline(images, masks, len(tiles), work, batch, configs, args.workers,
                                         probe, args.timeout)
      if "fillers" in sections:
        common.log("(c) classical fillers, one thread")
        res["fillers"] = bench_fillers(tiles, slow_limit=3, budget_s=max(3.0, 3 * args.min_seconds))
      if "stages" in sections:
        common.log("where the time goes: each step per tile, in-process")
        res["stages"] = bench_stages(tiles, images, masks, model_dir, batch, work, args.min_seconds)
      if "profile" in sections:
        common.log("py-spy profile of an in_memory native run")
        res["profile"] = bench_profile(images, masks, work, batch, args.profile_rate, args.timeout)
      if "gpu" in sections:
        common.log("GPU")
        res["gpu"] = bench_gpu(tiles[:16], model_dir, [int(b) for b in args.gpu_batches.split(",")],
                               args.min_seconds, force=args.gpu_anyway)
      name = f"speed_t{len(tiles)}{('_' + args.tag) if args.tag else ''}.json"
      lines = _goal_lines(res)
      if lines:
        raw = res.get("raw", {}).get("tiles_per_s")
        common.log(f"goals (raw loop {_fmt_rate(raw)} tiles/s at batch {batch}):")
        for line in lines:
          common.log(line)
  finally:
    if args.work is None and "profile" not in sections:
      shutil.rmtree(work, ignore_errors=True)
  res["machine"]["loadavg_end"] = common.loadavg()
  res["machine"]["other_heavy_processes_end"] = common.other_load()
  res["seconds_total"] = time.perf_counter() - t_start
  path = common.write_json(os.path.join(args.out, name), res)
  common.log(f"load average at end {res['machine']['loadavg_end']}; {res['seconds_total']:.0f} s in all; "
             f"wrote {os.path.relpath(path, ROOT)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
