"""The report's before/after thumbnails of the tiles with the largest holes.

Each tile's input and output are decimated to at most ``THUMB_SIDE`` pixels
a side, stretched with one per-band percentile stretch over the observed
pixels (shared by both), the restored pixels overlaid on "before" and
outlined on "after"; the provenance layer beside them when the run wrote one.
"""

from __future__ import annotations

import io
import re
from typing import Any, Optional, Sequence

import numpy as np

from pipeline import report_layers as layers
from transforms.raster_io import TIFF_EXTS, decode_raster, read_bytes, split_ext
from transforms.records import RESTORED

THUMB_SIDE = 320
STRETCH_PERCENTILES = (2.0, 98.0)
OVERLAY_RGB = (255, 0, 200)
OVERLAY_ALPHA = 0.45
JPEG_TOLERANCE = 12  # DN of 8-bit JPEG outputs under which a pixel counts as unchanged.


def _read_preview(path: str, max_side: int) -> tuple[np.ndarray, dict[str, Any]]:
  """A raster decimated (nearest) to at most ``max_side`` pixels a side.

  TIFFs are decimated while decoding (overviews when present), so big scenes
  do not have to fit in memory at full size; other formats are decoded in
  full by :func:`transforms.raster_io.decode_raster` and subsampled.

  Returns:
    ``([h, w, C] array, {"descriptions": [...], "nodata": ...})``.
  """
  data = read_bytes(path)
  ext = split_ext(path)[1].lower()
  if ext in TIFF_EXTS:
    from rasterio.enums import Resampling  # pylint: disable=import-outside-toplevel
    from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
    with MemoryFile(data) as mem, mem.open() as src:
      step = max(1, int(np.ceil(max(src.height, src.width) / max_side)))
      shape = (src.count, max(1, src.height // step), max(1, src.width // step))
      arr = src.read(out_shape=shape, resampling=Resampling.nearest)
      return np.moveaxis(arr, 0, -1), {"descriptions": list(src.descriptions), "nodata": src.nodata}
  arr, profile = decode_raster(data, ext)
  step = max(1, int(np.ceil(max(arr.shape[:2]) / max_side)))
  return arr[::step, ::step], {"descriptions": profile.get("descriptions") or [], "nodata": profile.get("nodata")}


# Only the colour words count: band numbers name different colours on different
# sensors (B4 is red on Landsat 8 and Sentinel-2, near-infrared on Landsat 5 and 7).
_COLOURS = ("red", "green", "blue")


def display_bands(descriptions: Sequence[Optional[str]],
                  count: int,
                  model_bands: Optional[Sequence[int]] = None) -> tuple[list[int], str]:
  """Which bands to show as red, green, blue, and a note saying which.

  Bands whose descriptions name red, green and blue are shown in that order;
  otherwise the three bands the model restored (``model_bands``, 1-based, from
  the metrics line's ``bands``: ``--bands`` or the profile's, e.g. B04,B03,B02
  of a 13-band Sentinel-2 scene); otherwise the first three bands as RGB; one
  or two bands as grey (the first).

  Returns:
    (0-based band indices, note).
  """
  if count < 3:
    return [0, 0, 0], "single band shown in grey" if count == 1 else "band 1 of 2 shown in grey"
  found = {}
  for colour in _COLOURS:
    for i, d in enumerate(descriptions or []):
      tokens = re.split(r"[^a-z0-9]+", (d or "").lower())
      if colour in tokens and i not in found.values():
        found[colour] = i
        break
  if len(found) == 3:
    idx = [found["red"], found["green"], found["blue"]]
    return idx, ("true colour: bands " + ",".join(str(i + 1) for i in idx) +
                 " (described as red, green, blue) shown as R,G,B")
  if model_bands and len(model_bands) == 3 and all(1 <= b <= count for b in model_bands):
    idx = [int(b) - 1 for b in model_bands]
    return idx, (f"the model's bands {','.join(str(b) for b in model_bands)} of {count} shown as R,G,B "
                 "(--bands or the profile's bands)")
  return [0, 1, 2], (f"bands 1,2,3 of {count} shown as R,G,B (no band descriptions name red, "
                     "green and blue: false colour possible)")


def stretch(image: np.ndarray,
            valid: np.ndarray,
            percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> tuple[np.ndarray, np.ndarray]:
  """Per-band (lo, hi) of a percentile stretch over the ``valid`` pixels."""
  px = image[valid] if valid.any() else image.reshape(-1, image.shape[-1])
  px = px.astype(np.float64)
  px = px[np.isfinite(px).all(axis=1)] if px.size else px
  if px.size == 0:
    return np.zeros(image.shape[-1]), np.ones(image.shape[-1])
  lo = np.percentile(px, percentiles[0], axis=0)
  hi = np.percentile(px, percentiles[1], axis=0)
  hi = np.where(hi > lo, hi, lo + 1e-9)
  return lo, hi


def to_rgb8(image: np.ndarray, bands: Sequence[int], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """``[h, w, C]`` -> ``[h, w, 3]`` uint8 with the given per-band stretch."""
  sel = image[:, :, list(bands)].astype(np.float64)
  lo_b, hi_b = np.asarray(lo)[list(bands)], np.asarray(hi)[list(bands)]
  unit = np.clip((sel - lo_b) / (hi_b - lo_b), 0.0, 1.0)
  return np.nan_to_num(unit * 255.0 + 0.5).astype(np.uint8)


def overlay(rgb: np.ndarray, mask: np.ndarray, colour=OVERLAY_RGB, alpha=OVERLAY_ALPHA) -> np.ndarray:
  out = rgb.astype(np.float32)
  out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, np.float32)
  return out.astype(np.uint8)


def _png(rgb: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
  return buf.getvalue()


def largest_holes(results: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
  """The ``n`` restored tiles with the largest single hole (then most missing pixels)."""
  restored = [r for r in results if r.get("outcome") == RESTORED and r.get("output")]
  key = lambda r: (
      -(r.get("metrics", {}).get("largest_hole") or 0),  # noqa: E731
      -(r.get("metrics", {}).get("missing_pixels") or 0),
      r.get("path", ""))
  return sorted(restored, key=key)[:n]


def make_thumbnails(row: dict[str, Any],
                    max_side: int = THUMB_SIDE,
                    output_dir: Optional[str] = None) -> dict[str, Any]:
  """Before (input, restored pixels overlaid), after (output, restored area
  outlined) and provenance PNGs of one tile.

  The restored area is the provenance layer's generated pixels when the run
  wrote one, else the pixels the run changed (input != output in any band; a
  generated value equal to the input's by chance is then not marked). The
  stretch uses observed pixels only, never no-data. A large scene with an
  engine preview (``preview/{stem}.png``) shows that preview instead.

  Returns:
    ``{"before": bytes, "after": bytes, "provenance": bytes or None,
    "note": str, "changed": fraction, "shape": (h, w)}``.
  """
  if output_dir and (row.get("metrics") or {}).get("scene"):
    png = layers.preview_bytes(output_dir, row)
    if png is not None:
      from PIL import Image  # pylint: disable=import-outside-toplevel
      with Image.open(io.BytesIO(png)) as im:
        shape = (im.height, im.width)
      return {
          "before": None,
          "after": png,
          "provenance": None,
          "shape": shape,
          "changed": 0.0,
          "note": "large scene: the engine's preview"
      }
  before, info = _read_preview(row["path"], max_side)
  after, _ = _read_preview(row["output"], max_side)
  if before.shape != after.shape:
    raise ValueError(f"input {before.shape} and output {after.shape} previews differ in shape")
  lossy = split_ext(row["output"])[1].lower() in (".jpg", ".jpeg")
  if lossy:  # JPEG re-encoding moves every pixel a little: mark only clear changes.
    diff = np.abs(before.astype(np.float64) - after.astype(np.float64)).max(axis=2)
    changed = diff > JPEG_TOLERANCE  # JPEG outputs are 8-bit.
  else:
    changed = np.any(before != after, axis=2)
  if before.dtype.kind == "f":
    changed &= ~(np.isnan(before) & np.isnan(after)).all(axis=2)
  classes = layers.read_provenance(output_dir, row, before.shape[:2]) if output_dir else None
  if classes is not None:
    changed = np.isin(classes, (1, 2))
  layout = (row.get("metrics") or {}).get("bands") or {}
  bands, note = display_bands(info["descriptions"], before.shape[2], layout.get("model"))
  if layout.get("extra"):
    note += (f"; every band comes out: bands {','.join(map(str, layout['extra']))} filled "
             f"({layout.get('extra_method')})")
  valid = layers.stretch_pixels(before, changed, info.get("nodata"))
  if classes is not None:
    valid &= classes == 0
  lo, hi = stretch(before, valid)
  if lossy:
    note += f"; JPEG output: pixels changed by more than {JPEG_TOLERANCE} DN are marked"
  return {
      "before": _png(overlay(to_rgb8(before, bands, lo, hi), changed)),
      "after": _png(layers.draw_outline(to_rgb8(after, bands, lo, hi), changed)),
      "provenance": _png(layers.provenance_rgb(classes)) if classes is not None else None,
      "note": note,
      "changed": float(changed.mean()),
      "shape": before.shape[:2]
  }
