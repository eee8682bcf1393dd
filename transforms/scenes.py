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
from typing import Any, Optional

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.atomic_write import write_bytes_atomic
from transforms.raster_io import read_bytes
from transforms.records import TilePair, WindowResult

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


def is_scene(element: Any) -> bool:
  """Whether ``element`` travels the large-scene path (the one place this is decided
  downstream of decode): a :class:`SceneRef`, a scene window's :class:`SpillRef`, or a
  :class:`WindowFailure` of a scene window. In-memory tiles and their windows' results
  (:class:`Tile`, :class:`WindowResult`, tile window failures) are not."""
  return isinstance(element, (SceneRef, SpillRef)) or bool(getattr(element, "scene", False))


def spill_dir(output_dir: str, stem: str) -> str:
  return FileSystems.join(output_dir, WORK_DIR, stem)


def spill(result: WindowResult, folder: str) -> SpillRef:
  buf = io.BytesIO()
  np.savez(buf,
           values=result.values,
           weights=result.weights,
           geom=np.array([result.y, result.x, result.h, result.w]),
           seconds=np.array(result.seconds))
  prefix = f"g{result.group}_" if result.group else ""
  path = FileSystems.join(folder, f"{prefix}{result.y}_{result.x}.npz")
  write_bytes_atomic(path, buf.getvalue())
  return SpillRef(path=path, y=result.y, x=result.x, group=result.group)


def unspill(ref: SpillRef) -> WindowResult:
  with np.load(io.BytesIO(read_bytes(ref.path))) as z:
    y, x, h, w = (int(v) for v in z["geom"])
    return WindowResult(y=y,
                        x=x,
                        h=h,
                        w=w,
                        values=z["values"],
                        weights=z["weights"],
                        seconds=float(z["seconds"]),
                        group=getattr(ref, "group", 0))


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
  return WindowResult(y=r.y + a - r0,
                      x=r.x,
                      h=b - a,
                      w=r.w,
                      values=r.values[cum[a]:cum[b]],
                      weights=r.weights[cum[a]:cum[b]],
                      seconds=r.seconds,
                      group=r.group)


def remove_local_copy(ref: SceneRef) -> None:
  """Removes the temporary local copy of a remote scene, if there is one."""
  if ref.local_path != ref.pair.image_path and os.path.exists(ref.local_path):
    os.remove(ref.local_path)
