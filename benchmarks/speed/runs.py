"""(b) The pipeline: ``pipeline.run.run`` in a fresh interpreter per configuration,
and the marginal rate from two tile counts."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

from benchmarks import common
from benchmarks.speed import base
from transforms import counters, pooled


def pipeline_argv(images: str,
                  masks: str,
                  output: str,
                  backend: str,
                  mode: str,
                  batch_size: int,
                  workers: int,
                  extra: Sequence[str] = ()) -> list[str]:
  argv = [
      "--images", images, "--masks", masks, "--output", output, "--config", "landsat8_l1", "--dilate", "0",
      "--overwrite", "--no-report", "--backend", backend, "--max-batch-size",
      str(batch_size), "--runner", "DirectRunner", f"--direct_running_mode={mode}"
  ]
  if mode == "multi_processing":
    argv.append(f"--direct_num_workers={workers}")
  return argv + list(extra)


def run_worker(argv: Sequence[str],
               log_path: str,
               timeout: float,
               wrap: Sequence[str] = (),
               root: str = base.ROOT) -> dict[str, Any]:
  """Runs :func:`worker` in a fresh interpreter in the checkout ``root``; returns its JSON and wall seconds."""
  cmd = [*wrap, sys.executable, "-m", "benchmarks.speed", "--worker", "--", *argv]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  t0 = time.perf_counter()
  with open(log_path, "w", encoding="utf-8") as log:
    proc = subprocess.run(cmd,
                          cwd=root,
                          env=env,
                          stdout=subprocess.PIPE,
                          stderr=log,
                          text=True,
                          timeout=timeout,
                          check=False)
  wall = time.perf_counter() - t0
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  lines = [l for l in proc.stdout.splitlines() if l.startswith(base.RESULT_TAG)]
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f"pipeline run failed (exit {proc.returncode}); see {log_path}")
  out = json.loads(lines[-1][len(base.RESULT_TAG):])
  out["process_wall_seconds"] = wall
  out["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  out["maxrss_mib_process_tree"] = after.ru_maxrss / 1024
  return out


def cpu_by_step(r: dict[str, Any]) -> dict[str, Any]:
  """Where a run's CPU went, per restored tile: each pooled step's own CPU
  time (the ``cloudfill:cpu_us_{step}`` distributions,
  :mod:`transforms.pooled`), and the rest of the process tree's CPU (the
  model, Beam, imports and start-up)."""
  tiles = max(1, r.get("restored") or 0)
  prefix = f"{counters.NAMESPACE}:{pooled.cpu_metric('')}"  # The worker's "namespace:name" keys.
  steps = {}
  for key, d in (r.get("beam_metrics") or {}).items():
    if key.startswith(prefix) and isinstance(d, dict):
      steps[key[len(prefix):]] = {"core_ms_per_tile": d["mean"] * d["count"] / 1000 / tiles, "elements": d["count"]}
  total = 1000 * r.get("cpu_seconds", 0.0) / tiles
  in_steps = sum(v["core_ms_per_tile"] for v in steps.values())
  return {
      "steps": steps,
      "steps_core_ms_per_tile": in_steps,
      "process_core_ms_per_tile": total,
      "rest_core_ms_per_tile": total - in_steps
  }


def log_cpu(cpu: dict[str, Any]) -> None:
  parts = ", ".join(f"{k} {v['core_ms_per_tile']:.1f}"
                    for k, v in sorted(cpu["steps"].items(), key=lambda kv: -kv[1]["core_ms_per_tile"]))
  common.log(f"    CPU per tile: {cpu['process_core_ms_per_tile']:.1f} core-ms in all; steps outside the model "
             f"{parts} (cut: with the quicklook); the rest (model, Beam, start-up) "
             f"{cpu['rest_core_ms_per_tile']:.1f}")


def _commit(root: str) -> Optional[str]:
  """The checkout's commit (``+`` when it has uncommitted changes), or None."""
  try:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=root,
                           capture_output=True,
                           text=True,
                           check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return head + ("+" if dirty else "")


def _probe(images, masks, work, tag, mode, backend, batch_size, workers, timeout, probe_tiles, root, extra=()):
  """One run of the first ``probe_tiles`` tiles (the start-up cost)."""
  small_dir = os.path.join(work, f"probe_tiles_{probe_tiles}")
  probe_imgs = os.path.join(small_dir, "images")
  os.makedirs(probe_imgs, exist_ok=True)
  src = sorted(n for n in os.listdir(os.path.dirname(images)) if n.endswith(".tif"))[:probe_tiles]
  for name in src:
    shutil.copy(os.path.join(os.path.dirname(images), name), os.path.join(probe_imgs, name))
  output = os.path.join(work, f"{tag}out_probe_{mode}_{backend}")
  shutil.rmtree(output, ignore_errors=True)
  argv = pipeline_argv(os.path.join(probe_imgs, "*.tif"), masks, output, backend, mode, batch_size, workers, extra)
  return run_worker(argv, os.path.join(work, f"{tag}log_probe_{mode}_{backend}.txt"), timeout, root=root)


def bench_pipeline(images: str,
                   masks: str,
                   n_tiles: int,
                   work: str,
                   batch_size: int,
                   configs: Sequence[tuple[str, str]],
                   workers: int,
                   probes: Sequence[tuple[str, str]],
                   timeout: float,
                   probe_tiles: int = 2,
                   root: str = base.ROOT,
                   extra: Sequence[str] = ()) -> dict[str, Any]:
  """Restored tiles per second through ``pipeline.run.run`` for each (mode, backend),
  with the code of the checkout ``root`` (another one: ``--baseline``).

  Each of ``probes`` (configurations among ``configs``) runs again on
  ``probe_tiles`` tiles: its start-up cost, and its marginal rate. ``extra``:
  more ``cloudfill run`` flags for every run (``--pipeline-flags``)."""
  out: dict[str, Any] = {"runs": [], "root": root, "commit": _commit(root), "extra_flags": list(extra)}
  tag = "" if root == base.ROOT else "baseline_"
  for mode, backend in configs:
    output = os.path.join(work, f"{tag}out_{mode}_{backend}")
    shutil.rmtree(output, ignore_errors=True)
    argv = pipeline_argv(images, masks, output, backend, mode, batch_size, workers, extra)
    common.log(f"  pipeline {mode:16s} {backend:6s} ...")
    r = run_worker(argv, os.path.join(work, f"{tag}log_{mode}_{backend}.txt"), timeout, root=root)
    r.update(mode=mode,
             backend=backend,
             workers=workers if mode == "multi_processing" else 1,
             tiles_per_s=r["restored"] / r["seconds"],
             loadavg_after=common.loadavg())
    if r["restored"] != n_tiles:
      r["warning"] = f"restored {r['restored']} of {n_tiles} tiles"
    r["cpu"] = cpu_by_step(r)
    out["runs"].append(r)
    common.log(f"  pipeline {mode:16s} {backend:6s}: {r['tiles_per_s']:7.2f} tiles/s "
               f"({r['restored']} tiles in {r['seconds']:.1f} s; + {r['import_seconds']:.1f} s imports, "
               f"process {r['process_wall_seconds']:.1f} s; load {r['loadavg_after']})")
    log_cpu(r["cpu"])
  for mode, backend in probes:
    r = _probe(images, masks, work, tag, mode, backend, batch_size, workers, timeout, probe_tiles, root, extra)
    full = next(x for x in out["runs"] if (x["mode"], x["backend"]) == (mode, backend))
    marginal = ((full["restored"] - r["restored"]) /
                (full["seconds"] - r["seconds"]) if full["seconds"] > r["seconds"] else None)
    extra_tiles = full["restored"] - r["restored"]
    # The CPU a tile more costs (start-up cancels), and of that what is not in the pooled steps.
    marginal_cpu = 1000 * (full["cpu_seconds"] - r["cpu_seconds"]) / extra_tiles if extra_tiles > 0 else None
    steps = full["cpu"]["steps_core_ms_per_tile"]
    out.setdefault("startups", []).append({
        "mode": mode,
        "backend": backend,
        "tiles": r["restored"],
        "seconds": r["seconds"],
        "cpu_seconds": r["cpu_seconds"],
        "marginal_tiles_per_s": marginal,
        "marginal_core_ms_per_tile": marginal_cpu,
        "marginal_core_ms_per_tile_outside_steps": None if marginal_cpu is None else marginal_cpu - steps
    })
    common.log(f"  start-up probe ({mode}, {backend}): {r['restored']} tiles in {r['seconds']:.1f} s; "
               f"marginal rate {base.fmt_rate(marginal)} tiles/s")
    if marginal_cpu is not None:
      common.log(f"    a tile more costs {marginal_cpu:.1f} core-ms, of which {marginal_cpu - steps:.1f} outside the "
                 f"pooled steps (the model and Beam; the raw loop's model alone: see (a))")
  if probes:
    out["startup"] = out["startups"][0]  # The first configuration's, as in the files before --probe-every.
  return out
