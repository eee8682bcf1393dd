"""Streamed scenes: their footprint, their low-resolution context, their windows.

A scene (:class:`transforms.scenes.SceneRef`) is never decoded whole. Here:

1. :func:`prepare_scene` reads it once by stripes to find the pixels outside
   the footprint (:mod:`transforms.footprint`) and the holes beyond
   ``--max-fill-distance``, and takes them out of its mask (bit-packed);
2. :func:`cut_scene` reads it once more by stripes into a
   :class:`transforms.context.LowRes` (block means of the known ground at
   ``context.factor_for(shape)``), fills it, writes the quicklook
   (``DIR/preview/{stem}.png``), then cuts the windows one row at a time;
   each row of windows (with half a window of rows above and below) gets its
   own push-pull under the low-resolution fill as its coarsest level
   (``LowRes.region_context``, in column chunks), and each window its crop:
   within 0.01 dB of the whole scene's push-pull on a 3000² Landsat 8 scene,
   and seamless across rows (block 0.86, truth 0.99); a guide is read window
   by window through a ``WarpedVRT`` and mapped to the window's radiometry by
   a linear fit on the window's own pixels known in both
   (:func:`transforms.regression.guided_fill`).

Memory: the scene's bit masks (a few bool ``[H, W]`` arrays while preparing),
one stripe, one row region's chunk, and the low-resolution scene (at most
1024² per band) — plus the windows the runner holds before inference (see
the README: 3.2 GB peak on an 8000² scene).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator, Optional

import numpy as np

from transforms import context as ctx
from transforms.bands import for_model_bands
from transforms import regression
from transforms import footprint, parallel, preview
from transforms.guide import AlignedGuide, GuideSpec, Grid
from transforms.records import Window
from transforms.scenes import STRIPE_ROWS, SceneRef, gdal_env, read_rows, spill_dir
from transforms.scaling import to_unit, value_range
from transforms.tiling import WindowSpec, cut_rows, pad_reflect


def prepare_scene(ref: SceneRef, spec: footprint.FootprintSpec) -> SceneRef:
  """The scene with its footprint applied (see :mod:`transforms.footprint`)."""
  import rasterio  # pylint: disable=import-outside-toplevel
  mask = ref.mask()
  h, w = mask.shape
  nodata = np.zeros((h, w), bool)
  stripe_spec = dataclasses.replace(spec, border_only=False)
  with gdal_env(), rasterio.open(ref.local_path,
                                 driver="GTiff") as src:  # Scenes are GeoTIFFs; GDAL reads no other format here.
    for r0 in range(0, h, STRIPE_ROWS):
      r1 = min(h, r0 + STRIPE_ROWS)
      nd = footprint.nodata_pixels(read_rows(src, r0, r1, ref.band_index), ref.profile.get("nodata"), stripe_spec)
      if nd is not None:
        nodata[r0:r1] = nd
  if spec.border_only and nodata.any():
    nodata = footprint.touching_border(nodata)
  mask &= ~nodata
  far = footprint.unfilled(~mask & ~nodata, mask, spec.max_fill_distance)
  if far is not None:
    mask &= ~far
  pack = lambda a: None if a is None or not a.any() else np.packbits(a, axis=None)  # noqa: E731
  return dataclasses.replace(ref,
                             packed_mask=np.packbits(mask, axis=None),
                             packed_nodata=pack(nodata),
                             packed_unfilled=pack(far),
                             notes=dict(ref.notes))


def lowres_of(ref: SceneRef, known: np.ndarray, spec: WindowSpec) -> ctx.LowRes:
  """Reads the scene by stripes into a filled :class:`context.LowRes`."""
  import rasterio  # pylint: disable=import-outside-toplevel
  h, w = known.shape
  lo, hi = value_range(ref.profile["dtype"], spec.value_range)
  lr = ctx.LowRes((h, w), len(ref.band_index), ctx.factor_for((h, w)))
  step = max(lr.factor, STRIPE_ROWS // lr.factor * lr.factor)
  with gdal_env(), rasterio.open(ref.local_path,
                                 driver="GTiff") as src:  # Scenes are GeoTIFFs; GDAL reads no other format here.
    for r0 in range(0, h, step):
      r1 = min(h, r0 + step)
      lr.add_rows(r0, to_unit(read_rows(src, r0, r1, ref.band_index), lo, hi), known[r0:r1].astype(np.float32))
  lr.finish()
  return lr


def _read_guide(guide: AlignedGuide, y: int, x: int, size: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
  """The guide over one window (``[S, S, C]`` values, ``[S, S]`` validity), 0 past the scene's edge."""
  gh, gw = min(size, h - y), min(size, w - x)
  values, valid = guide.read(y, x, gh, gw)
  gv = np.zeros((size, size, values.shape[2]), np.float32)
  gm = np.zeros((size, size), np.float32)
  gv[:gh, :gw], gm[:gh, :gw] = values, valid
  return gv, gm


def _with_guide(item: tuple[Window, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Window:
  """A window with its guide mapped on its own pixels known in both, and its guided context.

  ``item`` is the window (its ``context`` the unguided one) and its read
  guide values, guide validity and known ground (``[S, S]`` float32).
  Runs on :func:`transforms.parallel.ordered_map`'s threads: numpy only.
  """
  win, (gv, gm, known) = item
  start = time.perf_counter()
  g = regression.guided_fill(win.image, known, gv, gm, unguided=win.context)
  return dataclasses.replace(win,
                             context=g.fill,
                             guide=g.mapped,
                             guide_mask=(1.0 - gm)[:, :, None],
                             seconds=win.seconds + time.perf_counter() - start)


def cut_scene(ref: SceneRef,
              spec: WindowSpec,
              output_dir: str,
              guide_spec: Optional[GuideSpec] = None,
              write_preview: bool = True) -> Iterator[Window]:
  """The windows with holes of a scene, each with its context (and guide)."""
  import rasterio  # pylint: disable=import-outside-toplevel
  mask, known = ref.mask(), ref.known()
  h, w = mask.shape
  lr = lowres_of(ref, known, spec)
  if write_preview:
    f = lr.factor
    nodata = ref.nodata()
    inside = None if nodata is None else ~nodata[::f, ::f][:lr.fill.shape[0], :lr.fill.shape[1]]
    img = lr.fill if inside is None else np.where(inside[..., None], lr.fill, 0.0)
    preview.write_preview(output_dir, ref.pair.stem, img, inside)
  size = spec.size
  aligned = None
  if ref.guide is not None and guide_spec is not None:
    aligned = AlignedGuide(ref.guide, Grid.of(ref.profile, h, w), len(ref.band_index), ref.profile["dtype"],
                           for_model_bands(guide_spec, ref.layout)).__enter__()

  lo, hi = value_range(ref.profile["dtype"], spec.value_range)
  halo = size // 2
  cached: dict = {}

  def region(src, y):
    """The rows around the row of windows at ``y`` (raw and their context),
    read once: the row of windows and its context both come from them."""
    if cached.get("y") != y:
      f = lr.factor
      y0 = max(0, (y - halo) // f * f)
      y1 = min(h, y + size + halo)
      raw = read_rows(src, y0, y1, ref.band_index)
      cached.clear()
      cached.update(y=y,
                    y0=y0,
                    raw=raw,
                    ctx=lr.region_context(to_unit(raw, lo, hi), known[y0:y1].astype(np.float32), y0))
    return cached

  try:
    with gdal_env(), rasterio.open(ref.local_path,
                                   driver="GTiff") as src:  # Scenes are GeoTIFFs; GDAL reads no other format here.

      def rows(y, y_end):
        r = region(src, y)
        return r["raw"][y - r["y0"]:y_end - r["y0"]]

      reads: dict = {}  # (y, x) -> the window's guide, read here, fitted on the fill threads

      def context(y, x, image, kp):
        r = region(src, y)
        if aligned is not None:
          reads[(y, x)] = _read_guide(aligned, y, x, size, h, w) + (kp,)
        return {"context": pad_reflect(r["ctx"][y - r["y0"]:y - r["y0"] + size, x:x + size], size)}

      windows = cut_rows(ref.key,
                         mask,
                         ref.profile["dtype"],
                         rows,
                         spec,
                         spill_to=spill_dir(output_dir, ref.key),
                         known=known,
                         context=context)
      if aligned is None:
        yield from windows
      else:  # The guided fills (0.3–0.5 s a window on one core) run on all cores, in order.
        yield from parallel.ordered_map(_with_guide, ((win, reads.pop((win.y, win.x))) for win in windows),
                                        parallel.default_threads())
  finally:
    if aligned is not None:
      aligned.close()
