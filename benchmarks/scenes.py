"""Whole scenes under clouds larger than a window: ``cloudfill run`` against GDAL FillNodata (issue 8).

Scenes are real rasters from ``../shared/data`` (:data:`SCENES`): the Landsat
8 L1 scene with its own zero-valued fill corner (kept as no-data, passed as
``--nodata 0``), the same scene reflected out to 3000² (streamed by rows), a
NAIP date, a Sentinel-2 L2A date and a Landsat 5 date. Holes are real cloud
shapes (the UKIS reference masks, 512², scaled up so that single clouds span
several hundred pixels, grown or shrunk to ``--coverage``). Pixels under the
clouds are set to the dtype's maximum (a saturated cloud) in the input, so no
method can read the truth there.

Both methods fill the same holes: ``cloudfill run`` (subprocess, the
worktree's console script, the scene's ``--bands``/``--value-range``/
``--nodata``, plus ``--cloudfill-arg``), and GDAL FillNodata (per band, from
the known valid pixels, search distance 4× the farthest hole pixel's distance
to known ground, or the diagonal if that left any hole pixel unfilled). Per scene:

* hole PSNR, SSIM, MAE on the *scene scale*: each band stretched between the
  0.1 and 99.9 percentiles of its valid truth pixels (as the trainer scales
  scenes), plus hole PSNR on the *value-range scale* cloudfill uses (the
  dtype's range or ``--value-range``);
* the block metric (:func:`transforms.metrics.block_score`, on the model's
  window grid; ≈ 1 when seamless), beside the same metric on grids shifted
  off the windows (:func:`transforms.metrics.block_controls`: its spread on
  this scene when there are no blocks), and the seam score;
* the same figures for cloudfill's own context fill computed over the whole
  scene at once (:func:`transforms.context.push_pull`, no windows, no
  network): what the network adds on the scene, and the block metric of a
  fill that has no window grid at all;
* hole pixels left at 0 in every band, or left inside a flat 15×15 patch
  (every band constant), beside the truth's own flat count;
* whether known pixels and no-data pixels (including no-data under a cloud)
  are bit-identical to the input.

``--guided``: each scene with another, clear date in the data folder
(:attr:`SceneSpec.guide`) is restored with ``--guide`` it; GDAL and the
context rows stay unguided (GDAL FillNodata takes no guide).

Run::

  python -m benchmarks.scenes [--model DIR] [--scenes landsat8,naip] \
      [--out benchmarks/results/scenes] [--guided]

Writes ``scenes.json``, ``scenes.md``, ``panel_{scene}.png`` (before /
cloudfill / GDAL / truth) and, under ``--work`` (``runs/bench_scenes/``,
ignored by git), each scene's inputs, outputs and cloudfill log. ``python -m benchmarks.scene_tiles`` is the 256² tiles mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Optional

import numpy as np
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import common, runner  # noqa: E402
from benchmarks.scene_scoring import flat_pixels, markdown, panel, scene_scale, score  # noqa: E402,F401  (re-exported)
from training.masks import fit_coverage  # noqa: E402
from transforms import metrics  # noqa: E402
from transforms.context import push_pull  # noqa: E402
from transforms.scaling import from_unit, to_unit  # noqa: E402

CLOUD_MASKS = ("ukis_landsat7.png", "ukis_sentinel2.png", "ukis_landsat5.png")


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """One benchmark scene.

  Attributes:
    name: Short name (file stem).
    path: Raster under the data folder.
    bands: 1-based bands restored (``--bands``), or () for all.
    value_range: ``--value-range`` for cloudfill, or None for the dtype's.
    nodata: The scene's own fill value (no-data; ``--nodata``), or None.
    pad_to: Reflect the scene out to ``(H, W)`` (a larger, streamed scene).
    cloud_px: Side, in pixels, the 512² cloud mask is scaled to.
    mask: Which UKIS mask.
    guide: Another date of the same place under the data folder (clear), used
      with ``--guided``; None where the data folder has none.
  """

  name: str
  path: str
  bands: tuple[int, ...] = ()
  value_range: Optional[tuple[float, float]] = None
  nodata: Optional[float] = None
  pad_to: Optional[tuple[int, int]] = None
  cloud_px: int = 2048
  mask: str = "ukis_landsat7.png"
  guide: Optional[str] = None

  def cloudfill_args(self) -> list[str]:
    out = []
    if self.bands:
      out += ["--bands", ",".join(str(b) for b in self.bands)]
    if self.value_range:
      out += ["--value-range", f"{self.value_range[0]:g},{self.value_range[1]:g}"]
    if self.nodata is not None:
      out += ["--nodata", f"{self.nodata:g}"]
    return out


SCENES = {
    s.name: s for s in (
        SceneSpec("landsat8", "landsat8/LC08_L1TP_224078_20200518_B2B3B4.tif", nodata=0, cloud_px=3072),
        SceneSpec("landsat8_3000",
                  "landsat8/LC08_L1TP_224078_20200518_B2B3B4.tif",
                  nodata=0,
                  pad_to=(3000, 3000),
                  cloud_px=4608,
                  mask="ukis_sentinel2.png"),
        SceneSpec("naip2019",
                  "naip_5m/m_4709963_se_14_1_20190904.tif",
                  bands=(1, 2, 3),
                  cloud_px=3072,
                  mask="ukis_landsat5.png",
                  guide="naip_5m/m_4709963_se_14_1_20170827.tif"),
        SceneSpec("s2l2a_june",
                  "multidate/s2l2a_T33UUP_20210617_RGBN.tif",
                  bands=(1, 2, 3),
                  value_range=(0, 10000),
                  cloud_px=2048,
                  guide="multidate/s2l2a_T33UUP_20210925_RGBN.tif"),
        SceneSpec("landsat5_nanjing",
                  "multidate/landsat5_nanjing_20000503_6band.tif",
                  bands=(3, 2, 1),
                  cloud_px=3072,
                  mask="ukis_sentinel2.png",
                  guide="multidate/landsat5_nanjing_20020712_6band.tif"),
    )
}


def load_scene(spec: SceneSpec, data: str) -> tuple[np.ndarray, np.ndarray, dict]:
  """``(image [H, W, C_all], valid [H, W], profile)``; valid = not the scene's fill value."""
  import rasterio  # pylint: disable=import-outside-toplevel
  with rasterio.open(os.path.join(data, spec.path)) as src:
    img = np.moveaxis(src.read(), 0, -1)
    profile = {"crs": src.crs, "transform": src.transform, "nodata": src.nodata, "dtype": src.dtypes[0]}
  if spec.pad_to:
    ph, pw = spec.pad_to[0] - img.shape[0], spec.pad_to[1] - img.shape[1]
    img = np.pad(img, ((0, max(ph, 0)), (0, max(pw, 0)), (0, 0)), mode="reflect")
  valid = np.ones(img.shape[:2], bool)
  if spec.nodata is not None:
    valid = ~(img == np.asarray(spec.nodata, img.dtype)).all(-1)
  return img, valid, profile


def cloud_mask(spec: SceneSpec,
               shape: tuple[int, int],
               valid: np.ndarray,
               coverage: float,
               data: str,
               rng: np.random.Generator,
               tries: int = 24) -> np.ndarray:
  """A real cloud shape scaled to ``spec.cloud_px``, cropped to ``shape``, covering ``coverage`` of the valid area.

  Of ``tries`` random crops, the one whose own cover is nearest ``coverage``
  is grown or shrunk to it (:func:`training.masks.fit_coverage`). Clouds
  may lie over no-data too; the coverage counts valid pixels only.
  """
  import cv2  # pylint: disable=import-outside-toplevel
  src = cv2.imread(os.path.join(data, "cloud_masks", "ukis", spec.mask), cv2.IMREAD_GRAYSCALE) > 127
  h, w = shape
  side = max(spec.cloud_px, h, w)
  big = cv2.resize(src.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) > 0
  best, best_gap = None, None
  for _ in range(tries):
    y = int(rng.integers(0, side - h + 1))
    x = int(rng.integers(0, side - w + 1))
    m = big[y:y + h, x:x + w]
    gap = abs(float(m[valid].mean()) - coverage)
    if best is None or gap < best_gap:
      best, best_gap = np.ascontiguousarray(m), gap
  target = coverage
  for _ in range(4):
    m = fit_coverage(best, min(0.99, target * valid.mean()), rng)
    got = float(m[valid].mean())
    if abs(got - coverage) < 0.005:
      break
    target *= coverage / max(got, 1e-3)
  return m


def write_inputs(folder: str, name: str, given: np.ndarray, clouds: np.ndarray, profile: dict) -> tuple[str, str]:
  """The cloudy input GeoTIFF (no no-data declared, as the source) and its mask PNG (255 = cloud)."""
  import rasterio  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
  h, w, c = given.shape
  kw = {"crs": profile["crs"], "transform": profile["transform"]} if profile["crs"] else {}
  with rasterio.open(os.path.join(folder, "images", name + ".tif"),
                     "w",
                     driver="GTiff",
                     height=h,
                     width=w,
                     count=c,
                     dtype=given.dtype,
                     nodata=profile["nodata"],
                     compress="deflate",
                     zlevel=1,
                     tiled=True,
                     blockxsize=256,
                     blockysize=256,
                     **kw) as dst:
    dst.write(np.moveaxis(given, -1, 0))
  Image.fromarray(clouds.astype(np.uint8) * 255).save(os.path.join(folder, "masks", name + ".png"))
  return os.path.join(folder, "images", name + ".tif"), os.path.join(folder, "masks", "{stem}.png")


def read_output(path: str) -> np.ndarray:
  import rasterio  # pylint: disable=import-outside-toplevel
  with rasterio.open(path) as src:
    return np.moveaxis(src.read(), 0, -1)


def run_scene(spec: SceneSpec, args, card: dict, rng: np.random.Generator) -> tuple[dict, dict]:
  """Builds, restores (both ways) and scores one scene; returns (row, arrays for the panel)."""
  img, valid, profile = load_scene(spec, args.data)
  band_idx = [b - 1 for b in spec.bands] if spec.bands else list(range(img.shape[-1]))
  clouds = cloud_mask(spec, img.shape[:2], valid, args.coverage, args.data, rng)
  hole = clouds & valid
  dtype = img.dtype
  # Clouds are bright: the top of the value cloudfill is told to expect (inside
  # it, so the launch check's sample of the inputs does not refuse the scene).
  if spec.value_range:
    cloud_value = spec.value_range[1]
  else:
    cloud_value = np.iinfo(dtype).max if dtype.kind in "iu" else 1.0
  given = img.copy()
  given[hole] = cloud_value
  folder = os.path.join(args.work, spec.name)
  images, masks = write_inputs(folder, spec.name, given, clouds, profile)
  dist = ndimage.distance_transform_edt(hole)
  row = {
      "scene": spec.name,
      "source": spec.path,
      "shape": list(img.shape),
      "dtype": str(dtype),
      "bands": [b + 1 for b in band_idx],
      "reflected_to": list(spec.pad_to) if spec.pad_to else None,
      "cloud_mask": spec.mask,
      "cloud_coverage_of_valid": float(hole.sum() / valid.sum()),
      "nodata_pixels": int((~valid).sum()),
      "nodata_under_clouds": int((clouds & ~valid).sum()),
      "largest_cloud_px": int(np.bincount(ndimage.label(hole)[0].ravel())[1:].max()),
      "max_distance_to_known_px": float(dist.max())
  }
  common.log(f"{spec.name}: {img.shape[1]}x{img.shape[0]}, clouds {row['cloud_coverage_of_valid']:.1%} "
             f"of valid, up to {row['max_distance_to_known_px']:.0f} px from known ground")
  guide = ["--guide", os.path.join(os.path.abspath(args.data), spec.guide)] if args.guided else []
  row["guide"] = spec.guide if args.guided else None
  run = runner.run_cloudfill(images,
                             masks,
                             os.path.join(folder, "out"),
                             args.model,
                             spec.cloudfill_args() + guide + list(args.cloudfill_arg),
                             log_path=os.path.join(folder, "cloudfill.log"))
  row["cloudfill_command"] = " ".join(run["argv"])
  row["cloudfill_seconds"] = run["seconds"]
  row["cloudfill_exit"] = run["rc"]
  out_path = os.path.join(folder, "out", "restored", spec.name + ".tif")
  t = time.perf_counter()
  # A search distance of 4x the farthest hole pixel fills everything (checked below) and is
  # 3x faster than the scene's diagonal on the Landsat 8 scene, with the same fill (RMSE equal).
  search = 4 * row["max_distance_to_known_px"] + 16
  raw = runner.gdal_fill(given[..., band_idx], ~clouds & valid, search)
  if (raw[hole] == given[..., band_idx][hole]).all(-1).any():
    search = None  # some hole pixel left unfilled: the whole diagonal
    raw = runner.gdal_fill(given[..., band_idx], ~clouds & valid)
  row["gdal_search_distance_px"] = search or "diagonal"
  gdal = runner.to_dtype(raw, dtype)
  row["gdal_seconds"] = round(time.perf_counter() - t, 2)
  gdal = np.where(hole[..., None], gdal, given[..., band_idx])
  truth, sub_given = img[..., band_idx], given[..., band_idx]
  lo, hi = scene_scale(truth, valid)
  vrange = spec.value_range or ((0.0, float(np.iinfo(dtype).max)) if dtype.kind in "iu" else (0.0, 1.0))
  window = (int(card["window"]), int(card["overlap"]))
  row["scale"] = {"scene_lo": lo.tolist(), "scene_hi": hi.tolist(), "value_range": list(vrange)}
  row["truth_flat15_pixels"] = flat_pixels(truth, hole)
  # The block metric of the truth itself under the same holes: what a perfect fill reads.
  row["truth_block"] = metrics.block_score(((truth - lo) / (hi - lo)).astype(np.float32), hole, *window)
  row["gdal"] = score(gdal, truth, sub_given, hole, valid, lo, hi, vrange, window)
  # cloudfill's own context over the whole scene at once (no windows, no network): what the
  # network adds on the scene, and the block metric of a fill that has no window grid at all.
  # On the pipeline's own 0…1 scale (transforms.scaling), as cloudfill computes its context.
  t = time.perf_counter()
  fill = from_unit(push_pull(to_unit(sub_given, *vrange), (~clouds & valid).astype(np.float32)), *vrange)
  fill = runner.to_dtype(np.clip(fill, *vrange), dtype)
  row["context_seconds"] = round(time.perf_counter() - t, 2)
  row["context"] = score(np.where(hole[..., None], fill, sub_given), truth, sub_given, hole, valid, lo, hi, vrange,
                         window)
  arrays = {"given": sub_given, "gdal": gdal, "truth": truth, "clouds": clouds, "valid": valid, "lo": lo, "hi": hi}
  if os.path.exists(out_path):
    filled = read_output(out_path)
    row["cloudfill"] = score(filled[..., band_idx] if filled.shape[-1] == img.shape[-1] else filled, truth, sub_given,
                             hole, valid, lo, hi, vrange, window)
    arrays["filled"] = filled[..., band_idx] if filled.shape[-1] == img.shape[-1] else filled
    # The bands not restored must come through too.
    rest = [i for i in range(img.shape[-1]) if i not in band_idx]
    if rest and filled.shape[-1] == img.shape[-1]:
      row["cloudfill"]["other_bands_identical"] = bool(np.array_equal(filled[..., rest], given[..., rest]))
  else:
    row["cloudfill"] = {
        "error": f"no output; exit {run['rc']}; see {folder}/cloudfill.log",
        "summary_counts": (run["summary"] or {}).get("counts")
    }
  return row, arrays


def scene_rng(seed: int, name: str) -> np.random.Generator:
  """The random draws of scene ``name``: they depend on the seed and the scene
  alone, so a run of some scenes (``--scenes``) draws the same clouds as the
  full run."""
  return np.random.default_rng(seed + list(SCENES).index(name))


def write_results(args, card: dict, env: dict, rows: list[dict]) -> str:
  """Writes ``scenes.md`` and ``scenes.json``; returns the Markdown."""
  header = (f"Whole scenes under real cloud shapes scaled up ({args.coverage:.0%} of the valid area, seed "
            f"{args.seed}); model {card.get('name')} {card.get('version')} (window {card['window']}, overlap "
            f"{card['overlap']}). Hole PSNR on the scene scale = each band stretched between the 0.1 and 99.9 "
            f"percentiles of its valid pixels; value-range scale = the range cloudfill maps to 0…1. Machine: "
            f"{env['cpu_model']}, {env['cpus_usable']} cores, load {env['loadavg_start']} at the start, "
            f"{common.loadavg()} at the end.")
  if args.guided:
    header += (" **Guided**: cloudfill restores each scene with `--guide` its other date (" +
               ", ".join(f"{r['scene']}: `{r.get('guide')}`" for r in rows) + "); GDAL and the context stay unguided.")
  text = markdown(rows, header)
  with open(os.path.join(args.out, "scenes.md"), "w", encoding="utf-8") as f:
    f.write(text)
  common.write_json(
      os.path.join(args.out, "scenes.json"), {
          "card": card,
          "seed": args.seed,
          "coverage": args.coverage,
          "guided": bool(args.guided),
          "machine": env,
          "loadavg_end": common.loadavg(),
          "scenes": rows
      })
  return text


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--model", default=None, help="SavedModel for cloudfill run (default: the packaged one)")
  p.add_argument("--data", default=common.SHARED)
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scenes"))
  p.add_argument("--work",
                 default=os.path.join(ROOT, "runs", "bench_scenes"),
                 help="inputs, outputs and logs of each scene (runs/ is ignored by git)")
  p.add_argument("--scenes",
                 default=None,
                 help=f"comma-separated, of {','.join(SCENES)} (default: all; with "
                 "--guided, those with a guide date)")
  p.add_argument("--guided",
                 action="store_true",
                 help="restore each scene with --guide, its other date in the data folder (a clear one)")
  p.add_argument("--coverage", type=float, default=0.34, help="cloud cover of the valid area")
  p.add_argument("--seed", type=int, default=8)
  p.add_argument("--panel", default="landsat8", help="scene drawn as panel_{scene}.png")
  p.add_argument("--cloudfill-arg",
                 action="append",
                 default=[],
                 help="extra argument for cloudfill run (repeat; e.g. --cloudfill-arg=--max-fill-distance=400)")
  args = p.parse_args(argv)
  default = [n for n, s in SCENES.items() if s.guide or not args.guided]
  names = [n for n in args.scenes.split(",") if n] if args.scenes else default
  unknown = [n for n in names if n not in SCENES]
  if unknown:
    p.error(f"unknown scenes {unknown}; known: {sorted(SCENES)}")
  if args.guided and any(not SCENES[n].guide for n in names):
    p.error(f"--guided: no guide date for {[n for n in names if not SCENES[n].guide]}; with one: {default}")
  if not os.path.isdir(args.data):
    print(f"data folder {args.data} is absent", file=sys.stderr)
    return 2
  os.makedirs(args.out, exist_ok=True)
  card = runner.model_card(args.model)
  env = common.machine()
  rows = []
  for name in names:
    rng = scene_rng(args.seed, name)
    row, arrays = run_scene(SCENES[name], args, card, rng)
    rows.append(row)
    cf, gd = row["cloudfill"], row["gdal"]
    common.log(f"  cloudfill {cf.get('hole_psnr', float('nan')):.2f} dB block {cf.get('block')} "
               f"({row['cloudfill_seconds']:.0f} s) | GDAL {gd['hole_psnr']:.2f} dB block {gd['block']} "
               f"({row['gdal_seconds']:.0f} s)")
    if name == args.panel and "filled" in arrays:
      a = arrays
      panel(os.path.join(args.out, f"panel_{name}.png"),
            a["given"],
            a["filled"],
            a["gdal"],
            a["truth"],
            a["clouds"],
            a["valid"],
            a["lo"],
            a["hi"],
            bgr=name.startswith("landsat8"))
    write_results(args, card, env, rows)  # after every scene: a long run leaves what it measured
  text = write_results(args, card, env, rows)
  print(text)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
