"""``python -m benchmarks.speed``: see the package's docstring (``--help``)."""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import shutil
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

import numpy as np

from benchmarks import common
from benchmarks import speed as package
from benchmarks.speed import base, fillers, gpu, large, profiling, raw, render, runs, stages, tflite, worker
from model_loader import locate
from pipeline import options as cli_options


def _parse(argv: Optional[Sequence[str]]):
  p = argparse.ArgumentParser(prog="python -m benchmarks.speed",
                              description=package.__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=package.__doc__.split("\n\n", 1)[1])
  p.add_argument("--tiles", type=int, default=32, help="Number of 256x256 tiles (default 32).")
  p.add_argument("--layout",
                 choices=("random", "grid"),
                 default="random",
                 help="random: crops anywhere in the scene (they overlap, so a tile's neighbours grow "
                 "with --tiles); grid: a non-overlapping grid, as a pre-cut archive.")
  p.add_argument("--quick",
                 action="store_true",
                 help="About 2 minutes on 2 idle cores: 8 tiles, in_memory pipelines only, 0.5 s "
                 "per measurement, no start-up probe, no XLA.")
  p.add_argument("--out", default=base.DEFAULT_OUT, help="Folder for the JSON results.")
  p.add_argument("--work", default=None, help="Scratch folder (default: a temporary one, removed).")
  p.add_argument("--model", default=None, help="SavedModel (default: model_loader/default_model).")
  p.add_argument("--batch-size",
                 type=int,
                 default=None,
                 help="The pipeline's max batch size (default: the landsat8_l1 config's).")
  p.add_argument("--sections",
                 default=None,
                 help="Comma list of raw,pipeline,fillers,stages,profile,gpu,tflite, or 'all' (default: "
                 "raw,pipeline,fillers,stages, and gpu where TensorFlow sees a GPU).")
  p.add_argument("--configs",
                 default=",".join(f"{m}:{b}" for m, b in base.PIPELINE_CONFIGS),
                 help="Pipeline runs as mode:backend, comma-separated.")
  p.add_argument("--workers", type=int, default=2, help="--direct_num_workers for multi_processing.")
  p.add_argument("--min-seconds", type=float, default=3.0, help="Minimum time per raw/filler measurement.")
  p.add_argument("--no-startup-probe", action="store_true", help="Skip the start-up (probe) run.")
  p.add_argument("--probe-tiles",
                 type=int,
                 default=2,
                 help="Tiles of the probe run (default 2): the marginal rate is (tiles - probe tiles) / "
                 "(seconds - probe seconds), e.g. --tiles 960 --probe-tiles 192.")
  p.add_argument("--probe-every",
                 action="store_true",
                 help="A start-up probe for every configuration, not only the first: the marginal "
                 "rates of in_memory and multi_processing side by side.")
  p.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second.")
  p.add_argument("--gpu-batches", default="1,4,8,16,32,64,128")
  p.add_argument("--gpu-anyway", action="store_true", help="Run the GPU section on CPU (to test it).")
  p.add_argument("--large", action="store_true", help="Time large scenes instead (see --sizes).")
  p.add_argument("--sizes", default="2000,4000,8000", help="Scene sides for --large.")
  p.add_argument("--large-guided",
                 action="store_true",
                 help="With --large: each scene also with --guide (the scene x 0.9 + 400 on its grid).")
  p.add_argument("--scene-pixels",
                 type=int,
                 default=None,
                 help="With --large: the pipeline's --scene-pixels (default: its own, 2048*2048).")
  p.add_argument("--baseline",
                 default=None,
                 help="Another checkout (e.g. `git worktree add /tmp/base COMMIT`) whose pipeline is timed "
                 "in the same run, before this one's: the same configurations and start-up probe.")
  p.add_argument("--timeout", type=float, default=1800, help="Seconds per pipeline run.")
  p.add_argument("--pipeline-flags",
                 default="",
                 help="More `cloudfill run` flags for every pipeline run, one string (e.g. "
                 "'--neighbour-margin 0').")
  p.add_argument("--tag", default=None, help="Suffix of the JSON file name.")
  return p.parse_args(argv)


def _goal_lines(res: dict[str, Any]) -> list[str]:
  lines = []
  raw = res.get("raw", {}).get("tiles_per_s")
  gd = res.get("fillers", {})
  gdal = gd.get("by_filler", {}).get(gd.get("gdal_key") or "", {}).get("tiles_per_s")
  for key, label in (("pipeline_baseline", "baseline "), ("pipeline", "")):
    for r in res.get(key, {}).get("runs", []):
      ratio = r["tiles_per_s"] / raw if raw else None
      r["ratio_to_raw"] = ratio
      r["goal_85pct_of_raw"] = None if ratio is None else ratio >= base.GOAL_RATIO
      r["goal_ge_gdal_1core"] = None if gdal is None else r["tiles_per_s"] >= gdal
      lines.append(f"  {label}{r['mode']:16s} {r['backend']:6s} {r['tiles_per_s']:7.2f} tiles/s = " +
                   (f"{100 * ratio:5.1f} % of raw ({'MET' if ratio >= base.GOAL_RATIO else 'NOT met'}: >= 85 %)"
                    if ratio else "raw n/a") +
                   (f"; GDAL {gdal:.2f} tiles/s: {'MET' if r['tiles_per_s'] >= gdal else 'NOT met'}" if gdal else ""))
    startups = res.get(key, {}).get("startups") or [s for s in [res.get(key, {}).get("startup")] if s]
    for st in startups:
      if st.get("marginal_tiles_per_s") and raw:
        st["marginal_ratio_to_raw"] = st["marginal_tiles_per_s"] / raw
        lines.append(f"  {label}marginal (start-up excluded) {st['mode']} {st['backend']}: "
                     f"{st['marginal_tiles_per_s']:.2f} tiles/s = {100 * st['marginal_ratio_to_raw']:.1f} % of raw"
                     f"; start-up {st['seconds']:.1f} s")
    lines.extend(_multi_vs_in_process(res.get(key, {}), label))
  return lines


def _multi_vs_in_process(pipeline: dict[str, Any], label: str) -> list[str]:
  """The goal multi-process >= in-process (native backend), end to end and,
  where both were probed, on the marginal rates."""
  rate = {r["mode"]: r["tiles_per_s"] for r in pipeline.get("runs", []) if r["backend"] == "native"}
  marginal = {s["mode"]: s.get("marginal_tiles_per_s") for s in pipeline.get("startups", []) if s["backend"] == "native"}
  out = []
  for what, rates in (("end to end", rate), ("marginal", marginal)):
    multi, single = rates.get("multi_processing"), rates.get("in_memory")
    if multi and single:
      pipeline[f"multi_ge_in_process_{what.replace(' ', '_')}"] = multi >= single
      out.append(f"  {label}multi_processing / in_memory, {what}: {multi:.2f} / {single:.2f} tiles/s "
                 f"({'MET' if multi >= single else 'NOT met'}: >=)")
  return out


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] == "--worker":
    return worker.worker(argv[2:] if len(argv) > 1 and argv[1] == "--" else argv[1:])
  if argv and argv[0] == "--markdown":
    print(render.markdown(argv[1:]), end="")
    return 0
  args = _parse(argv)
  if args.quick:
    args.tiles = min(args.tiles, 8)
    args.configs = "in_memory:native,in_memory:tfx"
    args.min_seconds = 0.5
    args.no_startup_probe = True
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.path.insert(0, base.ROOT)
  model_dir = locate.resolve(args.model)
  batch = args.batch_size or cli_options.load_config("landsat8_l1").get("max_batch_size", 16)
  if args.sections is None:  # The GPU section runs wherever there is a GPU.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    args.sections = "raw,pipeline,fillers,stages" + (",gpu" if tf.config.list_physical_devices("GPU") else "")
  sections = ({"raw", "pipeline", "fillers", "stages", "profile", "gpu", "tflite"} if args.sections == "all" else set(
      args.sections.split(",")))
  res: dict[str, Any] = {"machine": common.machine()}
  m = res["machine"]
  common.log(f"machine: {m['cpu_model']}, {m['cpus_usable']} usable CPUs, {m['memory_gib']} GiB; "
             f"load average {m['loadavg_start']}; other heavy processes: {len(m['other_heavy_processes'])}")
  work = args.work or tempfile.mkdtemp(prefix="cloudfill-speed-")
  os.makedirs(work, exist_ok=True)
  card = base.card(model_dir)
  res["model"] = {"dir": model_dir, "name": card.name, "version": card.version, "window": card.window}
  res["batch_size"] = batch
  common.log(f"model {card.name} {card.version} (window {card.window}); pipeline batch size {batch}; "
             f"scratch {work}")
  t_start = time.perf_counter()
  try:
    if args.large:
      sizes = [int(s) for s in args.sizes.split(",")]
      res["large"] = large.bench_large(sizes,
                                       work,
                                       batch,
                                       args.timeout,
                                       scene_pixels=args.scene_pixels,
                                       guided=args.large_guided)
      name = f"large{('_' + args.tag) if args.tag else ''}.json"
    else:
      tiles, source = (base.grid_tiles(args.tiles) if args.layout == "grid" else common.make_tiles(args.tiles))
      res["tiles"] = {
          "count": len(tiles),
          "source": source,
          "coverage_mean": float(np.mean([t["mask"].mean() for t in tiles]))
      }
      common.log(f"tiles: {source}; mean coverage {res['tiles']['coverage_mean']:.1%}")
      # One folder per tile set: the pipeline matches every file in it.
      images, masks = common.write_tiles(tiles, os.path.join(work, f"tiles_{args.layout}_n{len(tiles)}"))
      if "raw" in sections:
        common.log("(a) raw SavedModel loop")
        res["raw"] = raw.bench_raw(tiles, model_dir, batch, (1, 4, 16, 32), args.min_seconds, xla=not args.quick)
      if "pipeline" in sections:
        common.log("(b) pipeline (DirectRunner), seconds from run() to wait_until_finish()")
        configs = [tuple(c.split(":")) for c in args.configs.split(",") if c]
        probes = [] if args.no_startup_probe else configs if args.probe_every else configs[:1]
        pipeline = functools.partial(runs.bench_pipeline,
                                     images,
                                     masks,
                                     len(tiles),
                                     work,
                                     batch,
                                     configs,
                                     args.workers,
                                     probes,
                                     args.timeout,
                                     probe_tiles=args.probe_tiles,
                                     extra=shlex.split(args.pipeline_flags))
        if args.baseline:
          common.log(f"  baseline: {args.baseline}")
          res["pipeline_baseline"] = pipeline(root=os.path.abspath(args.baseline))
          common.log("  this checkout:")
        res["pipeline"] = pipeline()
      if "fillers" in sections:
        common.log("(c) classical fillers, one thread")
        res["fillers"] = fillers.bench_fillers(tiles, slow_limit=3, budget_s=max(3.0, 3 * args.min_seconds))
      if "stages" in sections:
        common.log("where the time goes: each step per tile, in-process")
        res["stages"] = stages.bench_stages(tiles, images, masks, model_dir, batch, work, args.min_seconds)
      if "profile" in sections:
        common.log("py-spy profile of an in_memory native run")
        res["profile"] = profiling.bench_profile(images, masks, work, batch, args.profile_rate, args.timeout)
      if "tflite" in sections:
        common.log("TFLite fp16 / INT8 exports against the SavedModel, ms per window")
        res["tflite"] = tflite.bench_tflite(tiles, model_dir, work)
      if "gpu" in sections:
        common.log("GPU")
        res["gpu"] = gpu.bench_gpu(tiles[:16],
                                   model_dir, [int(b) for b in args.gpu_batches.split(",")],
                                   args.min_seconds,
                                   force=args.gpu_anyway)
      name = (f"speed_t{len(tiles)}{'_grid' if args.layout == 'grid' else ''}"
              f"{('_' + args.tag) if args.tag else ''}.json")
      lines = _goal_lines(res)
      if lines:
        raw_rate = res.get("raw", {}).get("tiles_per_s")
        common.log(f"goals (raw loop {base.fmt_rate(raw_rate)} tiles/s at batch {batch}):")
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
             f"wrote {os.path.relpath(path, base.ROOT)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
