"""Writing a restored large scene: its spilled windows assembled stripe by stripe.

:class:`AssembleScenes` takes a scene (:class:`transforms.scenes.SceneRef`)
and its restored windows (spilled to ``DIR/.work/``) and writes the output
GeoTIFF (and its provenance layer) a stripe of rows at a time, every band
(:class:`transforms.scene_bands.SceneBands`), so memory follows a stripe.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import uuid
from typing import Iterator, Optional

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms import counters, geotiff_out, metrics, provenance
from transforms.composite import composite
from transforms.incremental import output_path, provenance_tags
from transforms.raster_io import (delete_folder, finish_tiff, upload_file_atomic)
from transforms.records import DEAD, RESTORED, DeadLetter, TileResult, WindowFailure, WindowResult
from transforms.scaling import to_unit, value_range
from transforms.scene_bands import SceneBands
from transforms.scenes import (STRIPE_ROWS, SceneRef, SpillRef, crop_rows, gdal_env, read_rows, remove_local_copy,
                               spill_dir, unspill)


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
        yield beam.pvalue.TaggedOutput(DEAD, DeadLetter.of_failed_windows(ref.pair.image_path, failures))
        continue
      try:
        yield self._assemble(ref, spills)
      except Exception as e:  # pylint: disable=broad-except
        self._cleanup(ref)
        counters.inc("failed_write")
        yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(ref.pair.image_path, "write", f"{type(e).__name__}: {e}"))

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
              metrics.block_steps(unit,
                                  m,
                                  spec.window[0],
                                  spec.window[0] - spec.window[1],
                                  origin=(r0, 0),
                                  full_shape=(h, w),
                                  out=blocks)
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
          prov.write(
              r0,
              provenance.derive(out if extra is None else out[:, :, list(ref.band_index)], m,
                                ref.profile.get("nodata")))
          loaded = [r for r in loaded if r.y + r.h > r1]
        finish_tiff(dst, profile, provenance_tags(ref.pair, spec.model_version, spec.weights_sha256))
      with gdal_env():  # Overviews and the COG copy read the whole scene: GDAL's default cache would keep it.
        geotiff_out.finish_file(tmp, profile, spec.tiff)
      prov.finish(provenance.provenance_path(spec.output_dir, ref.pair.stem))
      upload_file_atomic(tmp, dest)
    finally:
      prov.abort()
      if os.path.exists(tmp):
        os.remove(tmp)
    self._cleanup(ref)
    measured = metrics.hole_stats(mask)
    measured.update(windows=len(spills), scene=True, seam=float(np.mean(seams)) if seams else None)
    if spec.window:
      measured["block"] = metrics.block_ratio(blocks)
    measured.update(ref.notes)
    measured["unfilled"] = 0 if unfilled is None else int(unfilled.sum())
    if unfilled is not None:
      measured["unfilled_as"] = ("nodata" if nodata_value is not None else
                                 "input unchanged (the file declares no no-data value)")
    nodata = ref.nodata()
    if nodata is not None:
      measured["nodata_pixels"] = int(nodata.sum())
    if quality:
      n = np.array([q[0] for q in quality], np.float64)
      mse = float(np.sum(n * np.array([10**(-q[1]["psnr"] / 10) for q in quality])) / n.sum())
      measured["psnr"] = float(10 * np.log10(1 / mse)) if mse > 0 else float("inf")
      for k in ("mae", "ssim", "spectral_angle_deg"):
        if k in quality[0][1]:
          measured[k] = float(np.sum(n * np.array([q[1][k] for q in quality])) / n.sum())
    if extra is not None:
      infer_seconds += extra.infer_seconds
    measured["seconds"] = {"window_infer": infer_seconds, "assemble_write": time.perf_counter() - start}
    counters.inc("restored")
    counters.inc("restored_scenes")
    return TileResult(path=ref.pair.image_path, stem=ref.pair.stem, outcome=RESTORED, output=dest, metrics=measured)

  def _cleanup(self, ref: SceneRef) -> None:
    try:
      delete_folder(spill_dir(self._spec.output_dir, ref.key))
    except Exception:  # pylint: disable=broad-except
      pass  # Left-over spills are overwritten by the next run.
    remove_local_copy(ref)
