"""What the report draws besides the before/after pictures.

* the outline of the restored area (drawn on "after", so the fill can be
  judged without a tint over it);
* the provenance layer (``DIR/provenance/{stem}.tif``) in its colours;
* the engine's preview of a large scene (``DIR/preview/{stem}.png``);
* which pixels a stretch may use: not no-data (declared, NaN, or 0 in every
  band of an integer image that declares none), not generated.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from apache_beam.io.filesystems import FileSystems
from scipy import ndimage

from transforms import provenance
from transforms.raster_io import read_bytes, split_ext

PREVIEW_DIR = "preview"
OUTLINE_RGB = (255, 0, 200)


def outline(mask: np.ndarray) -> np.ndarray:
  """``[h, w]`` bool: the pixels of ``mask`` that touch a pixel outside it (1 px wide)."""
  if not mask.any():
    return mask
  inner = ndimage.binary_erosion(mask, np.ones((3, 3), bool), border_value=1)
  return mask & ~inner


def draw_outline(rgb: np.ndarray, mask: np.ndarray, colour=OUTLINE_RGB) -> np.ndarray:
  out = rgb.copy()
  out[outline(mask)] = colour
  return out


def stretch_pixels(image: np.ndarray, changed: np.ndarray, nodata: Optional[float]) -> np.ndarray:
  """``[h, w]`` bool: pixels a display stretch may use (observed, not no-data)."""
  valid = ~changed
  if image.dtype.kind == "f":
    valid &= np.isfinite(image).all(axis=2)
  if nodata is not None and not np.isnan(nodata):
    valid &= ~np.all(image == np.asarray(nodata).astype(image.dtype), axis=2)
  elif nodata is None and image.dtype.kind in "iu":
    zero = np.all(image == 0, axis=2)  # The usual fill of integer scenes that declare no no-data.
    if not zero.all():
      valid &= ~zero
  return valid


def _stem_path(output_dir: str, folder: str, row: dict[str, Any], ext: str) -> str:
  stem = row.get("stem") or split_ext(row["path"])[0]
  return FileSystems.join(output_dir, folder, stem + ext)


def read_provenance(output_dir: str, row: dict[str, Any], shape: tuple[int, int]) -> Optional[np.ndarray]:
  """The tile's provenance classes decimated to ``shape``, or None when it has none."""
  path = _stem_path(output_dir, provenance.PROVENANCE_DIR, row, ".tif")
  try:
    if not FileSystems.exists(path):
      return None
    from rasterio.enums import Resampling  # pylint: disable=import-outside-toplevel
    from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
    with MemoryFile(read_bytes(path)) as mem, mem.open() as src:
      return src.read(1, out_shape=shape, resampling=Resampling.nearest)
  except Exception:  # pylint: disable=broad-except  (a missing layer must not sink the report)
    return None


def provenance_rgb(classes: np.ndarray) -> np.ndarray:
  """``[h, w]`` classes -> ``[h, w, 3]`` uint8 in the layer's own colours (no-data white)."""
  out = np.full(classes.shape + (3,), 255, np.uint8)
  for value, rgba in provenance.COLORMAP.items():
    if value != provenance.NODATA:
      out[classes == value] = rgba[:3]
  return out


def preview_bytes(output_dir: str, row: dict[str, Any]) -> Optional[bytes]:
  """The engine's PNG preview of a large scene, if it wrote one."""
  path = _stem_path(output_dir, PREVIEW_DIR, row, ".png")
  try:
    return read_bytes(path) if FileSystems.exists(path) else None
  except Exception:  # pylint: disable=broad-except
    return None


def legend_html() -> str:
  swatches = "".join(f'<span class="swatch" style="background: rgb{provenance.COLORMAP[k][:3]}"></span>{v} ({k}) '
                     for k, v in provenance.CLASSES.items()
                     if k != provenance.NODATA)
  return f'<div class="meta">{swatches}; no-data ({provenance.NODATA}) white</div>'
