"""Large scenes: streamed by rows, so memory follows the window, not the scene.

A GeoTIFF above ``DecodeSpec.scene_pixels`` (2048² by default) is not decoded
whole. Instead:

1. decode keeps only its header and its mask (bit-packed: 1 bit a pixel) in a
   :class:`SceneRef`;
2. :func:`cut_scene` reads one row of windows at a time from the file
   and yields the windows with holes, which share ``RunInference`` with the
   tiles' windows;
3. each restored window's values are spilled to ``{output}/.work/{stem}/``
   right after inference (see :mod:`transforms.infer`), so only small
   :class:`SpillRef` records pass the group-by;
4. :class:`AssembleScenes` writes the output GeoTIFF stripe by stripe: read
   the input rows, blend the spilled windows that cross them, write them.

Only GeoTIFFs take this path (PNG/JPEG cannot be read by rows).
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import time
import uuid
from typing import Any, Iterator, Optional

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms import counters, geotiff_out, metrics, provenance
from transforms.composite import composite
from transforms.incremental import output_path, provenance_tags
from transforms.raster_io import (delete_folder, finish_tiff, read_bytes, upload_file_atomic,
                                  write_bytes_atomic)
from transforms.records import RESTORED, DeadLetter, TilePair, TileResult, WindowFailure, WindowResult
from transforms.window import to_unit, value_range

DEAD = "dead"
STRIPE_ROWS = 1024
WORK_DIR = ".work"
# GDAL's block cache defaults to 5 % of RAM and would keep every block of a
# scene read by rows; a scene is read once in order, so a small cache is enough.
GDAL_CACHE_MB = 64


def gdal_env():
  """A rasterio environment with a small block cache, for streaming scenes."""
  import rasterio  # pylint: disable=import-outside-toplevel
  return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)


@dataclasses.dataclass
class SceneRef:
  """A large scene, by reference.

  Attributes:
    pair: Where it came from.
    local_path: A local copy (or the file itself) readable by rasterio.
    profile: Its profile (with ``height``, ``width``, ``count``).
    band_index: 0-based bands to restore.
    packed_mask: ``np.packbits`` of the ``[H, W]`` missing-pixel mask (after
      :mod:`transforms.scene_context` prepared it: the pixels to fill).
    packed_nodata, packed_unfilled: the same for the pixels outside the
      footprint and the holes beyond ``--max-fill-distance``; None = none.
    guide: The scene's resolved guide (:class:`transforms.guide.GuideRef`) or None.
    notes: Facts for the metrics (``guided``, ``guide``).
    layout: A :class:`transforms.bands.BandLayout` when the model restores
      only some of the bands (the output has all of them), else None.
  """

  pair: TilePair
  local_path: str
  profile: dict[str, Any]
  band_index: tuple[int, ...]
  packed_mask: np.ndarray
  packed_nodata: Optional[np.ndarray] = None
  packed_unfilled: Optional[np.ndarray] = None
  guide: Any = None
  notes: dict[str, Any] = dataclasses.field(default_factory=dict)
  layout: Any = None

  @property
  def key(self) -> str:
    return self.pair.name

  @property
  def shape(self) -> tuple[int, int]:
    return self.profile["height"], self.profile["width"]

  def _unpack(self, packed: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if packed is None:
      return None
    h, w = self.shape
    return np.unpackbits(packed, count=h * w).reshape(h, w).view(bool)

  def mask(self) -> np.ndarray:
    return self._unpack(self.packed_mask)

  def nodata(self) -> Optional[np.ndarray]:
    return self._unpack(self.packed_nodata)

  def unfilled(self) -> Optional[np.ndarray]:
    return self._unpack(self.packed_unfilled)

  def known(self) -> np.ndarray:
    """``[H, W]`` bool known ground (not to fill, not no-data, not unfilled)."""
    k = ~self.mask()
    for extra in (self.nodata(), self.unfilled()):
      if extra is not None:
        k &= ~extra
    return k


@dataclasses.dataclass(frozen=True)
class SpillRef:
  """Where a scene window's restored values were spilled (``group``: its band group)."""

  path: str
  y: int
  x: int
  group: int = 0


def spill_dir(output_dir: str, stem: str) -> str:
  return FileSystems.join(output_dir, WORK_DIR, stem)


def spill(result: WindowResult, folder: str) -> SpillRef:
  buf = io.BytesIO()
  np.savez(buf, values=result.values, weights=result.weights,
           geom=np.array([result.y, result.x, result.h, result.w]), seconds=np.array(result.seconds))
  prefix = f"g{result.group}_" if result.group else ""
  path = FileSystems.join(folder, f"{prefix}{result.y}_{result.x}.npz")
  write_bytes_atomic(path, buf.getvalue())
  return SpillRef(path=path, y=result.y, x=result.x, group=result.group)


def unspill(ref: SpillRef) -> WindowResult:
  with np.load(io.BytesIO(read_bytes(ref.path))) as z:
    y, x, h, w = (int(v) for v in z["geom"])
    return WindowResult(y=y, x=x, h=h, w=w, values=z["values"], weights=z["weights"],
                        seconds=float(z["seconds"]), group=getattr(ref, "group", 0))


def read_rows(src, r0: int, r1: int, band_index: tuple[int, ...]) -> np.ndarray:
  """Rows ``[r0, r1)`` of an open rasterio dataset as ``[rows, W, C]``."""
  from rasterio.windows import Window as RWindow  # pylint: disable=import-outside-toplevel
  arr = src.read(indexes=[i + 1 for i in band_index], window=RWindow(0, r0, src.width, r1 - r0))
  return np.moveaxis(arr, 0, -1)


def crop_rows(r: WindowResult, r0: int, r1: int, mask: np.ndarray) -> Optional[WindowResult]:
  """The part of a window's result in scene rows ``[r0, r1)``, in stripe coordinates.

  Values are in row-major order of the window's missing pixels, so the
  pixels of a band of rows are one contiguous run.
  """
  a, b = max(r0, r.y) - r.y, min(r1, r.y + r.h) - r.y
  if a >= b:
    return None
  per_row = mask[r.y:r.y + r.h, r.x:r.x + r.w].sum(axis=1)
  cum = np.concatenate([[0], np.cumsum(per_row)])
  return WindowResult(y=r.y + a - r0, x=r.x, h=b - a, w=r.w, values=r.values[cum[a]:cum[b]],
                      weights=r.weights[cum[a]:cum[b]], seconds=r.seconds, group=r.group)


@dataclasses.dataclass(frozen=True)
class SceneWriteSpec:
  output_dir: str
  model_version: str
  evaluate: bool = False
  value_range: Optional[tuple[float, float]] = None
  window: Optional[tuple[int, int]] = None  # (size, overlap), for the block metric
  tiff: geotiff_out.TiffSpec = geotiff_out.TiffSpec()
  weights_sha256: str = ""


class AssembleScenes(beam.DoFn):
  """``(stem, {"scene": [SceneRef], "spills": [SpillRef...]})`` -> TileResult.

  Writes the output stripe by stripe into a temporary file beside (or, for
  object storage, before uploading to) its final name; then removes the
  spilled windows and any temporary copy of the input.
  """

  def __init__(self, spec: SceneWriteSpec):
    self._spec = spec

  def process(self, joined) -> Iterator:
    _, groups = joined
    spills = sorted(groups["spills"], key=lambda s: (s.y, s.x))
    failures = [s for s in spills if isinstance(s, WindowFailure)]
    for ref in groups["scene"]:
      if failures:  # Inference failed for some of its windows (see transforms.infer).
        self._cleanup(ref)
        counters.inc("failed_infer")
        yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
            ref.pair.image_path, failures[0].stage, f"{len(failures)} window(s) failed: {failures[0].reason}"))
        continue
      try:
        yield self._assemble(ref, spills)
      except Exception as e:  # pylint: disable=broad-except
        self._cleanup(ref)
        counters.inc("failed_write")
        yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(ref.pair.image_path, "write",
                                                        f"{type(e).__name__}: {e}"))

  def _assemble(self, ref: SceneRef, spills: list[SpillRef]) -> TileResult:
    import rasterio  # pylint: disable=import-outside-toplevel
    spec = self._spec
    start = time.perf_counter()
    mask = ref.mask()
    h, w = mask.shape
    c = len(ref.band_index)
    vrange = value_range(ref.profile["dtype"], spec.value_range)
    dest = output_path(spec.output_dir, ref.pair.image_path)
    if FileSystems.get_scheme(dest) is None:
      os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
      tmp = os.path.join(os.path.dirname(os.path.abspath(dest)), f".{os.path.basename(dest)}.{uuid.uuid4().hex}.tmp")
    else:
      tmp = tempfile.mkstemp(prefix="cloudfill-scene-", suffix=".tif")[1]
    profile = dict(ref.profile, descriptions=[ref.profile["descriptions"][i] for i in ref.band_index])
    extra = None
    if ref.layout is not None:  # Every band comes out (transforms.bands).
      from transforms.bands import SceneBands  # pylint: disable=import-outside-toplevel
      extra = SceneBands(ref, [s for s in spills if s.group], mask, vrange)
      profile, c = ref.profile, ref.layout.count
      spills = [s for s in spills if not s.group]
    unfilled, nodata_value = ref.unfilled(), ref.profile.get("nodata")
    pending = list(spills)
    loaded: list[WindowResult] = []
    seams, quality, infer_seconds, blocks = [], [], 0.0, {}
    prov = provenance.StripeWriter(profile, h, w)
    try:
      with gdal_env(), rasterio.open(ref.local_path) as src, \
          rasterio.open(tmp, "w", **geotiff_out.gtiff_kwargs(profile, h, w, c, spec.tiff)) as dst:
        from rasterio.windows import Window as RWindow  # pylint: disable=import-outside-toplevel
        if extra is not None:
          extra.start(src)
        for r0 in range(0, h, STRIPE_ROWS):
          r1 = min(h, r0 + STRIPE_ROWS)
          if extra is not None:
            a, b = extra.rows(h, r0, r1)
            raw = read_rows(src, a, b, tuple(range(c)))
            rows = raw[r0 - a:r1 - a][:, :, list(ref.band_index)]
          else:
            rows = read_rows(src, r0, r1, ref.band_index)
          m = mask[r0:r1]
          while pending and pending[0].y < r1:
            loaded.append(unspill(pending.pop(0)))
            infer_seconds += loaded[-1].seconds
          if m.any():
            parts = [p for p in (crop_rows(r, r0, r1, mask) for r in loaded) if p is not None]
            out = composite(rows, m, parts, spec.value_range, ref.profile.get("nodata"))
            unit = to_unit(out, *vrange)
            seam = metrics.seam_score(unit, m)
            if seam is not None:
              seams.append(seam)
            if spec.window:
              metrics.block_steps(unit, m, spec.window[0], spec.window[0] - spec.window[1],
                                  origin=(r0, 0), full_shape=(h, w), out=blocks)
            if spec.evaluate:
              quality.append((int(m.sum()), metrics.quality(unit, to_unit(rows, *vrange), m)))
          else:
            out = rows
          if extra is not None:
            out = extra.stripe(raw, a, r0, r1, out)
          if unfilled is not None and nodata_value is not None and unfilled[r0:r1].any():
            out = out.copy()
            out[unfilled[r0:r1]] = np.asarray(nodata_value).astype(out.dtype)
          dst.write(np.moveaxis(out, -1, 0), window=RWindow(0, r0, w, r1 - r0))
          prov.write(r0, provenance.derive(out if extra is None else out[:, :, list(ref.band_index)], m,
                                           ref.profile.get("nodata")))
          loaded = [r for r in loaded if r.y + r.h > r1]
        finish_tiff(dst, profile, provenance_tags(ref.pair, spec.model_version, spec.weights_sha256))
      geotiff_out.finish_file(tmp, profile, spec.tiff)
      prov.finish(provenance.provenance_path(spec.output_dir, ref.pair.image_path))
      upload_file_atomic(tmp, dest)
    finally:
      prov.abort()
      if os.path.exists(tmp):
        os.remove(tmp)
    self._cleanup(ref)
    measured = metrics.hole_stats(mask)
    measured.update(windows=len(spills), scene=True,
                    seam=float(np.mean(seams)) if seams else None)
    if spec.window:
      measured["block"] = metrics.block_ratio(blocks)
    measured.update(ref.notes)
    measured["unfilled"] = 0 if unfilled is None else int(unfilled.sum())
    if unfilled is not None:
      measured["unfilled_as"] = ("nodata" if nodata_value is not None
                                 else "input unchanged (the file declares no no-data value)")
    nodata = ref.nodata()
    if nodata is not None:
      measured["nodata_pixels"] = int(nodata.sum())
    if quality:
      n = np.array([q[0] for q in quality], np.float64)
      mse = float(np.sum(n * np.array([10 ** (-q[1]["psnr"] / 10) for q in quality])) / n.sum())
      measured["psnr"] = float(10 * np.log10(1 / mse)) if mse > 0 else float("inf")
      for k in ("mae", "ssim", "spectral_angle_deg"):
        if k in quality[0][1]:
          measured[k] = float(np.sum(n * np.array([q[1][k] for q in quality])) / n.sum())
    if extra is not None:
      infer_seconds += extra.infer_seconds
    measured["seconds"] = {"window_infer": infer_seconds,
                           "assemble_write": time.perf_counter() - start}
    counters.inc("restored")
    counters.inc("restored_scenes")
    return TileResult(path=ref.pair.image_path, stem=ref.pair.stem, outcome=RESTORED,
                      output=dest, metrics=measured)

  def _cleanup(self, ref: SceneRef) -> None:
    try:
      delete_folder(spill_dir(self._spec.output_dir, ref.key))
    except Exception:  # pylint: disable=broad-except
      pass  # Left-over spills are overwritten by the next run.
    remove_local_copy(ref)


def remove_local_copy(ref: SceneRef) -> None:
  """Removes the temporary local copy of a remote scene, if there is one."""
  if ref.local_path != ref.pair.image_path and os.path.exists(ref.local_path):
    os.remove(ref.local_path)
