"""Every band comes out: which fill of the extra bands is better, per band (issue 12.2).

The bands the model does not restore ("extra bands": the NIR of a 4-band
NAIP or Sentinel-2 L2A RGBN stack, ten of the 13 bands of a Sentinel-2 L1C
scene beside B04,B03,B02) are filled either

* ``guided``: regressed on the restored model bands (a global least-squares
  fit, then :func:`transforms.regression.guided_fill`'s local linear fit plus
  interpolated residual; :func:`transforms.bands.guided_extra`), or
* ``model``: through the model in groups of its band count (the last group
  padded by repeating a band).

Both are run as a user runs them: ``python -m pipeline.cli run`` (this
worktree's code) over the same inputs, once with ``--extra-bands guided`` and
once with ``--extra-bands model``, with the default model unless ``--model``.
Inputs are real, cloud-free rasters from ``../shared/data`` under real cloud
masks (the UKIS reference masks, resized to the scene, for NAIP and
Sentinel-2 L2A; the eo-learn s2cloudless masks, which share the L1C scenes'
100×101 grid, for Sentinel-2 L1C); the pixels under the clouds are set to the
value range's top (a saturated cloud) in every band of the input, so no method
can read the truth there. Per band: hole PSNR (dB) on each image's own
0.1–99.9 percentile stretch of that band's known pixels (the README's scale),
averaged over the images. ``push_pull`` is the extra band's own context alone
(the classical fill the model corrects), for reference.

Run::

  python -m benchmarks.bands [--model DIR] [--sets naip,s2l2a,s2l1c] \\
      [--out benchmarks/results/bands] [--work runs/bench_bands]

Writes ``bands.json`` (every figure, the commands, the machine) and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import common  # noqa: E402
from benchmarks.bands_large import bench_large  # noqa: E402
from transforms import context as ctx  # noqa: E402

DATA = os.environ.get("CLOUDFILL_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
METHODS = ("guided", "model")


@dataclasses.dataclass(frozen=True)
class BandSet:
  """One data set: files, their cloud masks, and the ``cloudfill run`` profile.

  Attributes:
    name: Short name.
    files: Rasters under the data folder.
    band_names: Names of the input's bands, in order.
    model_bands: 1-based bands the model restores (the profile's, or the first ones).
    args: ``cloudfill run`` arguments (profile, dilation).
    masks: ``ukis`` (the 512² UKIS masks resized to each scene) or ``clm``
      (eo-learn s2cloudless masks on the L1C grid, 10–60 % cover).
    cloud_value: What the input holds under a cloud (the value range's top).
    per_file: How many masks each file is restored under.
    guided_by_previous: Each file (but the first) is restored with the
      previous file (an earlier date of the same place) as ``--guide``: the
      model bands get the guide date's help, extra bands only through the
      ``guided`` method (the ``model`` method's band groups run unguided).
  """

  name: str
  files: tuple[str, ...]
  band_names: tuple[str, ...]
  model_bands: tuple[int, ...]
  args: tuple[str, ...]
  masks: str
  cloud_value: float
  per_file: int = 3
  guided_by_previous: bool = False


SETS = {
    s.name: s for s in (
        BandSet(
            "naip",
            tuple(
                f"naip_5m/m_4709963_se_14_1_{d}.tif"
                for d in ("20090818", "20120731", "20150926", "20170827",
                          "20190904")), ("red", "green", "blue", "nir"), (1, 2, 3), ("--config", "rgb8"), "ukis", 255),
        BandSet("s2l2a", ("multidate/s2l2a_T33UUP_20210617_RGBN.tif", "multidate/s2l2a_T33UUP_20210925_RGBN.tif"), (
            "B04", "B03", "B02", "B08"), (1, 2, 3), ("--config", "sentinel2_l2a", "--dilate", "0"), "ukis", 10000),
        BandSet("naip_guide",
                tuple(f"naip_5m/m_4709963_se_14_1_{d}.tif"
                      for d in ("20090818", "20120731", "20150926", "20170827",
                                "20190904")), ("red", "green", "blue", "nir"), (1, 2, 3), ("--config", "rgb8"),
                "ukis",
                255,
                guided_by_previous=True),
        BandSet("s2l2a_guide", ("multidate/s2l2a_T33UUP_20210617_RGBN.tif",
                                "multidate/s2l2a_T33UUP_20210925_RGBN.tif"), ("B04", "B03", "B02",
                                                                              "B08"), (1, 2,
                                                                                       3), ("--config", "sentinel2_l2a",
                                                                                            "--dilate", "0"),
                "ukis",
                10000,
                guided_by_previous=True),
        BandSet("s2l1c",
                tuple(f"sentinel2/eolearn_reference_{i}.tif" for i in range(5)), (
                    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
                    "B12"), (4, 3, 2), ("--config", "sentinel2_l1c", "--dilate", "0"),
                "clm",
                1.0,
                per_file=4),
    )
}


def _read(path: str) -> tuple[np.ndarray, dict]:
  import rasterio  # pylint: disable=import-outside-toplevel
  with rasterio.open(path) as src:
    return np.moveaxis(src.read(), 0, -1), {
        "crs": src.crs,
        "transform": src.transform,
        "nodata": src.nodata,
        "dtype": src.dtypes[0]
    }


def _write(path: str, arr: np.ndarray, meta: dict) -> None:
  import rasterio  # pylint: disable=import-outside-toplevel
  h, w, c = arr.shape
  kw = dict(driver="GTiff", height=h, width=w, count=c, dtype=arr.dtype, compress="deflate")
  for k in ("crs", "transform", "nodata"):
    if meta.get(k) is not None:
      kw[k] = meta[k]
  with rasterio.open(path, "w", **kw) as dst:
    dst.write(np.moveaxis(arr, -1, 0))


def _masks(kind: str, shape: tuple[int, int], n: int, seed: int) -> list[np.ndarray]:
  """``n`` real cloud masks for an image of ``shape``."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  h, w = shape
  if kind == "ukis":
    names = ("ukis_sentinel2.png", "ukis_landsat7.png", "ukis_landsat5.png")
    out = []
    for name in names[:n]:
      m = Image.open(os.path.join(DATA, "cloud_masks", "ukis", name)).convert("L")
      out.append(np.asarray(m.resize((w, h), Image.NEAREST)) > 127)
    return out
  folder = os.path.join(DATA, "cloud_masks", "eolearn_clm")
  cands = []
  for name in sorted(os.listdir(folder)):
    m = np.asarray(Image.open(os.path.join(folder, name))) > 0
    if m.shape == (h, w) and 0.10 <= m.mean() <= 0.60:
      cands.append(m)
  rng = np.random.default_rng(seed)
  return [cands[i] for i in rng.choice(len(cands), size=min(n, len(cands)), replace=False)]


def _stretch_psnr(restored: np.ndarray, truth: np.ndarray, known: np.ndarray, hole: np.ndarray) -> list[float]:
  """Per band hole PSNR (dB) on the band's 0.1–99.9 percentile stretch of its known truth."""
  out = []
  for b in range(truth.shape[2]):
    t = truth[:, :, b].astype(np.float64)
    lo, hi = np.percentile(t[known], [0.1, 99.9])
    span = hi - lo if hi > lo else 1.0
    r = np.clip((restored[:, :, b][hole].astype(np.float64) - lo) / span, 0, 1)
    tt = np.clip((t[hole] - lo) / span, 0, 1)
    mse = float(np.mean((r - tt)**2))
    out.append(float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"))
  return out


def _push_pull(image: np.ndarray, known: np.ndarray, vrange: tuple[float, float]) -> np.ndarray:
  """Each band's own push-pull fill (the context the model corrects), in the input's scale."""
  lo, hi = vrange
  unit = (image.astype(np.float32) - lo) / (hi - lo)
  return ctx.push_pull(unit, known.astype(np.float32)) * (hi - lo) + lo


def _run(images: str, out: str, model: Optional[str], args: list[str], log_path: str) -> dict:
  argv = [
      sys.executable, "-m", "pipeline.cli", "run", "--images", images, "--masks", "{dir}/{stem}_mask.png", "--output",
      out, "--no-report", "--overwrite", "-q"
  ] + args
  if model:
    argv += ["--model", model]
  start = time.perf_counter()
  proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
  seconds = time.perf_counter() - start
  with open(log_path, "w", encoding="utf-8") as f:
    f.write(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
  if proc.returncode != 0:
    raise RuntimeError(f"cloudfill run exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
  shown = ["python -m pipeline.cli"] + [os.path.relpath(a, ROOT) if os.path.isabs(a) else a for a in argv[3:]]
  return {"argv": shown, "seconds": round(seconds, 2)}


def run_set(s: BandSet, model: Optional[str], work: str, seed: int = 0) -> dict:
  """Restores one data set both ways; returns its per-band figures."""
  folder = os.path.join(work, s.name)
  shutil.rmtree(folder, ignore_errors=True)
  os.makedirs(os.path.join(folder, "in"))
  os.makedirs(os.path.join(folder, "guides"))
  cases = []
  for i, rel in enumerate(s.files):
    if s.guided_by_previous and i == 0:
      continue
    truth, meta = _read(os.path.join(DATA, rel))
    for j, hole in enumerate(_masks(s.masks, truth.shape[:2], s.per_file, seed + i)):
      stem = f"{s.name}_{i}_{j}"
      nodata = meta.get("nodata")
      valid = np.ones(truth.shape[:2], bool) if nodata is None else ~np.all(truth == nodata, axis=2)
      img = truth.copy()
      img[hole] = np.asarray(s.cloud_value).astype(img.dtype)
      if s.guided_by_previous:
        shutil.copy(os.path.join(DATA, s.files[i - 1]), os.path.join(folder, "guides", stem + ".tif"))
      _write(os.path.join(folder, "in", stem + ".tif"), img, meta)
      from PIL import Image  # pylint: disable=import-outside-toplevel
      Image.fromarray((hole * 255).astype(np.uint8)).save(os.path.join(folder, "in", stem + "_mask.png"))
      cases.append({
          "stem": stem,
          "file": rel,
          "truth": truth,
          "hole": hole & valid,
          "known": ~hole & valid,
          "coverage": float((hole & valid).sum() / valid.sum())
      })
  runs = {}
  for method in METHODS:
    out = os.path.join(folder, f"out_{method}")
    runs[method] = _run(
        os.path.join(folder, "in", f"{s.name}_*.tif"), out, model,
        list(s.args) + ["--extra-bands", method] +
        (["--guide", os.path.join(folder, "guides", "{stem}.tif")] if s.guided_by_previous else []),
        os.path.join(folder, f"{method}.log"))
  scales = {}
  mdir = os.path.join(folder, "out_guided", "metrics")
  for name in os.listdir(mdir):
    with open(os.path.join(mdir, name), encoding="utf-8") as f:
      for line in f:
        r = json.loads(line)
        scales[r["stem"]] = tuple(r["metrics"]["value_scale"])
  per_case = []
  for c in cases:
    row = {"stem": c["stem"], "file": c["file"], "coverage": round(c["coverage"], 4)}
    vrange = scales[c["stem"]]
    for method in METHODS:
      got, _ = _read(os.path.join(folder, f"out_{method}", "restored", c["stem"] + ".tif"))
      if got.shape != c["truth"].shape:
        raise RuntimeError(f"{c['stem']}: output {got.shape}, input {c['truth'].shape}")
      src, _ = _read(os.path.join(folder, "in", c["stem"] + ".tif"))
      row[f"{method}_known_identical"] = bool(np.array_equal(got[~c["hole"]], src[~c["hole"]]))
      row[f"{method}_hole_px_unchanged"] = int((got[c["hole"]] == src[c["hole"]]).all(axis=1).sum())
      row[method] = _stretch_psnr(got, c["truth"], c["known"], c["hole"])
    img, _ = _read(os.path.join(folder, "in", c["stem"] + ".tif"))
    row["push_pull"] = _stretch_psnr(_push_pull(img, c["known"], vrange), c["truth"], c["known"], c["hole"])
    per_case.append(row)
  table = {}
  for b, name in enumerate(s.band_names):
    kind = "model" if (b + 1) in s.model_bands else "extra"
    table[name] = {
        "kind": kind,
        **{
            m: round(float(np.mean([r[m][b] for r in per_case])), 2) for m in METHODS + ("push_pull",)
        }
    }
  return {
      "set": s.name,
      "files": list(s.files),
      "model_bands": list(s.model_bands),
      "cases": len(cases),
      "guide": "the previous date" if s.guided_by_previous else None,
      "mean_coverage": round(float(np.mean([c["coverage"] for c in cases])), 3),
      "runs": runs,
      "per_band": table,
      "per_case": per_case
  }


def markdown(results: list[dict]) -> str:
  lines = [
      "| set | band | restored by | guided | model (band groups) | push_pull (own context) | Δ guided − model |",
      "|---|---|---|---|---|---|---|"
  ]
  for r in results:
    for name, v in r["per_band"].items():
      kind = "model" if v["kind"] == "model" else "extra"
      lines.append(f"| {r['set']} ({r['cases']} images, {r['mean_coverage'] * 100:.0f} % cloud) | {name} | {kind} | "
                   f"{v['guided']:.2f} | {v['model']:.2f} | {v['push_pull']:.2f} | "
                   f"{v['guided'] - v['model']:+.2f} |")
    ex = [v for v in r["per_band"].values() if v["kind"] == "extra"]
    lines.append(f"| {r['set']} | **extra bands, mean** | | **{np.mean([v['guided'] for v in ex]):.2f}** | "
                 f"**{np.mean([v['model'] for v in ex]):.2f}** | {np.mean([v['push_pull'] for v in ex]):.2f} | "
                 f"{np.mean([v['guided'] - v['model'] for v in ex]):+.2f} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default=None, help="SavedModel (default: the packaged default model).")
  p.add_argument("--sets", default="naip,s2l2a,s2l1c,naip_guide,s2l2a_guide", help="Comma-separated: " + ",".join(SETS))
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "bands"))
  p.add_argument("--work", default=os.path.join(ROOT, "runs", "bench_bands"))
  p.add_argument("--large",
                 type=int,
                 default=0,
                 metavar="SIDE",
                 help="Instead: time and peak RSS of a streamed SIDE² × 4 uint16 scene (e.g. 8000).")
  p.add_argument("--large-methods", default="guided", help="Methods for --large (comma-separated).")
  args = p.parse_args(argv)
  if not os.path.isdir(DATA):
    print(f"no shared data at {DATA}", file=sys.stderr)
    return 2
  info = common.machine()
  if args.large:
    res = bench_large(args.large, args.work, args.model, args.large_methods.split(","))
    info["loadavg_end"] = common.loadavg()
    common.write_json(os.path.join(args.out, f"large_{args.large}.json"), {"machine": info, **res})
    return 0 if all(r["exit"] == 0 for r in res["large"]) else 1
  results = []
  for name in args.sets.split(","):
    common.log(f"{name} …")
    results.append(run_set(SETS[name], args.model, args.work))
    common.log(markdown(results[-1:]))
  info["loadavg_end"] = common.loadavg()
  table = markdown(results)
  common.write_json(os.path.join(args.out, "bands.json"), {
      "machine": info,
      "model": args.model or "default",
      "results": results,
      "table": table
  })
  print(table)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
