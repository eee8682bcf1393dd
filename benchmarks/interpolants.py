"""How far is cloudfill's context from the best classical interpolant? (issue 8)

On whole scenes the lead over GDAL FillNodata is the context's
(:func:`transforms.context.push_pull`; the network adds −0.01…+0.17 dB,
``benchmarks/results/scenes/seeds.md``). Push-pull approximates the
membrane (harmonic) interpolation: hole values whose 4-neighbour Laplacian is
zero, equal to the known pixels on the holes' borders. This benchmark solves
that problem exactly and compares, on the scenes and cloud draws of
:mod:`benchmarks.scenes` (same scenes, same seeds, same clouds):

* ``push-pull``: the shipped context (smoothing sweeps 2, 8, 24 by level);
* ``push-pull, more sweeps``: 32, 64, 128 sweeps by level (3× the time);
* ``harmonic, exact``: the discrete Laplace equation over the hole pixels,
  solved by conjugate gradients (Jacobi preconditioner, relative residual
  1e-6, push-pull as the start), no-data pixels neither known nor filled (no
  edge to them);
* ``gdal``: GDAL FillNodata as in :mod:`benchmarks.scenes`.

Hole PSNR on the scene scale (:func:`benchmarks.scene_scoring.scene_scale`).
The 3000² reflected scene is left out (the exact solve takes minutes there).

Run::

  python -m benchmarks.interpolants [--seeds 8,9,10] [--out benchmarks/results/scenes]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from scipy import ndimage

from benchmarks import common, runner
from benchmarks.scene_scoring import scene_scale
from benchmarks.scenes import ROOT, SCENES, cloud_mask, load_scene, scene_rng
from transforms import context
from transforms.scaling import from_unit, to_unit

METHODS = ("push-pull", "push-pull, more sweeps", "harmonic, exact", "gdal")


def laplace_system(hole: np.ndarray, valid: np.ndarray):
  """The discrete Laplace equation over the ``hole`` pixels (4-neighbours).

  Returns ``(A, rows, ys, xs)``: ``A`` the ``[n, n]`` sparse system (degree
  on the diagonal, −1 per neighbour in the hole), and for each edge to a
  known pixel its row and the known pixel's position (the right-hand side
  sums those pixels' values). Pixels outside ``valid`` have no edges.
  """
  h, w = hole.shape
  index = np.full((h, w), -1, np.int64)
  index[hole] = np.arange(int(hole.sum()))
  fy, fx = np.nonzero(hole)
  degree = np.zeros(len(fy))
  inner_r, inner_c, edge_r, edge_y, edge_x = [], [], [], [], []
  for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
    ny, nx = fy + dy, fx + dx
    r = np.flatnonzero((ny >= 0) & (ny < h) & (nx >= 0) & (nx < w))
    ny, nx = ny[r], nx[r]
    keep = valid[ny, nx]
    r, ny, nx = r[keep], ny[keep], nx[keep]
    degree[r] += 1
    inside = hole[ny, nx]
    inner_r.append(r[inside])
    inner_c.append(index[ny[inside], nx[inside]])
    edge_r.append(r[~inside])
    edge_y.append(ny[~inside])
    edge_x.append(nx[~inside])
  n = len(fy)
  rows, cols = np.concatenate(inner_r), np.concatenate(inner_c)
  a = sp.diags(degree) - sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
  return a.tocsr(), np.concatenate(edge_r), np.concatenate(edge_y), np.concatenate(edge_x)


def harmonic(unit: np.ndarray, hole: np.ndarray, valid: np.ndarray, start: np.ndarray) -> np.ndarray:
  """The exact membrane fill of ``hole`` in ``unit`` (``[H, W, C]`` float32), from ``start``."""
  a, rows, ys, xs = laplace_system(hole, valid)
  jacobi = sp.diags(1.0 / np.maximum(a.diagonal(), 1.0))
  out = start.copy()
  for c in range(unit.shape[-1]):
    b = np.bincount(rows, weights=unit[ys, xs, c].astype(np.float64), minlength=a.shape[0])
    x, _ = spl.cg(a, b, x0=start[hole][:, c].astype(np.float64), M=jacobi, rtol=1e-6, maxiter=5000)
    out[hole, c] = x
  return out


def more_sweeps(level: int) -> int:
  """The ``push-pull, more sweeps`` schedule."""
  return 32 if level == 0 else (64 if level == 1 else 128)


def hole_psnr(out: np.ndarray, truth: np.ndarray, hole: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
  d = (out[hole].astype(np.float64) - truth[hole]) / (hi - lo)
  return float(-10 * np.log10(np.mean(d**2)))


@dataclasses.dataclass(frozen=True)
class SceneDraw:
  """One scene under one cloud draw of :mod:`benchmarks.scenes` (same scenes, seeds and clouds).

  Attributes:
    truth: ``[H, W, C]`` the scored bands, in the scene's dtype.
    valid: ``[H, W]`` inside the footprint. hole: valid pixels under the clouds.
    known: valid pixels not under the clouds.
    vrange: The value range cloudfill maps to 0…1.
    lo, hi: ``[C]`` the scene scale (:func:`benchmarks.scene_scoring.scene_scale`).
  """

  truth: np.ndarray
  valid: np.ndarray
  hole: np.ndarray
  known: np.ndarray
  vrange: tuple[float, float]
  lo: np.ndarray
  hi: np.ndarray


def scene_draw(name: str, seed: int, data: str, coverage: float) -> SceneDraw:
  """The scene ``name`` under the clouds ``benchmarks.scenes`` draws for ``seed``."""
  spec = SCENES[name]
  img, valid, _ = load_scene(spec, data)
  clouds = cloud_mask(spec, img.shape[:2], valid, coverage, data, scene_rng(seed, name))
  truth = img[..., [b - 1 for b in spec.bands] if spec.bands else slice(None)]
  lo, hi = scene_scale(truth, valid)
  return SceneDraw(truth, valid, clouds & valid, ~clouds & valid, spec.value_range or
                   (0.0, float(np.iinfo(truth.dtype).max)), lo, hi)


def gdal_scene_fill(d: SceneDraw) -> np.ndarray:
  """GDAL FillNodata of a draw's holes from its known pixels, as in :mod:`benchmarks.scenes`
  (search distance 4× the farthest hole pixel's distance to known ground); float, the truth's scale."""
  search = 4 * float(ndimage.distance_transform_edt(d.hole).max()) + 16
  return runner.gdal_fill(np.where(d.known[..., None], d.truth, 0), d.known, search)


def run_scene(name: str, seed: int, data: str, coverage: float) -> dict:
  """The four fills of one scene draw: hole PSNR and seconds each."""
  d = scene_draw(name, seed, data, coverage)
  truth, hole, valid, known, vrange, lo, hi = d.truth, d.hole, d.valid, d.known, d.vrange, d.lo, d.hi
  dtype = truth.dtype
  unit = to_unit(np.where(known[..., None], truth, 0), *vrange)

  def finish(fill):
    return runner.to_dtype(np.clip(from_unit(fill, *vrange), *vrange), dtype)

  out, seconds = {}, {}
  t = time.perf_counter()
  shipped = context.push_pull(unit, known.astype(np.float32))
  seconds["push-pull"] = time.perf_counter() - t
  out["push-pull"] = finish(shipped)
  shipped_sweeps, context._sweeps = context._sweeps, more_sweeps  # pylint: disable=protected-access
  try:
    t = time.perf_counter()
    out["push-pull, more sweeps"] = finish(context.push_pull(unit, known.astype(np.float32)))
    seconds["push-pull, more sweeps"] = time.perf_counter() - t
  finally:
    context._sweeps = shipped_sweeps  # pylint: disable=protected-access
  t = time.perf_counter()
  out["harmonic, exact"] = finish(harmonic(unit, hole, valid, shipped))
  seconds["harmonic, exact"] = seconds["push-pull"] + time.perf_counter() - t
  t = time.perf_counter()
  out["gdal"] = runner.to_dtype(gdal_scene_fill(d), dtype)
  seconds["gdal"] = time.perf_counter() - t
  return {
      "scene": name,
      "seed": seed,
      "psnr": {
          m: hole_psnr(out[m], truth, hole, lo, hi) for m in METHODS
      },
      "seconds": {
          m: round(s, 2) for m, s in seconds.items()
      }
  }


def markdown(rows: list[dict], env: dict) -> str:
  lines = [
      f"Exact membrane (harmonic) fill against cloudfill's push-pull context and GDAL FillNodata: the "
      f"scenes and clouds of `benchmarks.scenes` (34 % cover), hole PSNR dB on the scene scale. Machine: "
      f"{env['cpu_model']}, {env['cpus_usable']} cores, load {env['loadavg_start']} at the start, "
      f"{common.loadavg()} at the end. `python -m benchmarks.interpolants`.", "",
      "| scene | seed | " + " | ".join(METHODS) + " | harmonic − push-pull | push-pull − GDAL | harmonic − GDAL |",
      "|---|---|" + "---|" * (len(METHODS) + 3)
  ]
  for r in rows:
    p = r["psnr"]
    lines.append(f"| {r['scene']} | {r['seed']} | " +
                 " | ".join(f"{p[m]:.2f} ({r['seconds'][m]:.1f} s)" for m in METHODS) +
                 f" | {p['harmonic, exact'] - p['push-pull']:+.2f} | {p['push-pull'] - p['gdal']:+.2f} | "
                 f"{p['harmonic, exact'] - p['gdal']:+.2f} |")
  gain = [r["psnr"]["harmonic, exact"] - r["psnr"]["push-pull"] for r in rows]
  sweeps = [r["psnr"]["push-pull, more sweeps"] - r["psnr"]["push-pull"] for r in rows]
  lines += [
      "", f"Mean over {len(rows)} scene-draws: exact harmonic − push-pull {np.mean(gain):+.3f} dB "
      f"(min {min(gain):+.2f}, max {max(gain):+.2f}); more sweeps − push-pull {np.mean(sweeps):+.3f} dB.", ""
  ]
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--data", default=common.SHARED)
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scenes"))
  p.add_argument("--seeds", default="8,9,10")
  p.add_argument("--scenes", default="landsat8,naip2019,s2l2a_june,landsat5_nanjing")
  p.add_argument("--coverage", type=float, default=0.34)
  args = p.parse_args(argv)
  if not os.path.isdir(args.data):
    p.error(f"data folder {args.data} is absent")
  env, rows = common.machine(), []
  for seed in (int(s) for s in args.seeds.split(",")):
    for name in args.scenes.split(","):
      rows.append(run_scene(name, seed, args.data, args.coverage))
      common.log(f"{name} seed {seed}: " + ", ".join(f"{m} {v:.2f}" for m, v in rows[-1]["psnr"].items()))
  os.makedirs(args.out, exist_ok=True)
  text = markdown(rows, env)
  with open(os.path.join(args.out, "interpolants.md"), "w", encoding="utf-8") as f:
    f.write(text)
  common.write_json(os.path.join(args.out, "interpolants.json"), {"machine": env, "rows": rows})
  print(text)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
