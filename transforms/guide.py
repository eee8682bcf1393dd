"""Guides: another acquisition of the same place, aligned to the target's grid.

``--guide TEMPLATE`` (repeatable, in order of preference; ``{stem}``,
``{dir}``, ``{date}`` as in ``--masks``) names each image's guide; the first
that exists is used. ``--guide-masks TEMPLATE`` names the guide's own clouds
(``{stem}``/``{dir}`` of the *guide*; default: only its no-data). A guide on
another grid (CRS, resolution, extent) is read through rasterio's
``WarpedVRT`` onto the target's grid, so a streamed scene reads it window by
window.

What can happen, and what the pipeline does:

* no guide file exists: restored unguided, counted as ``unguided``;
* the guide does not overlap the target: dead letter (:class:`GuideError`);
* other band count or dtype: read with the same ``--bands`` selection, or
  dead-lettered with the reason;
* the guide is cloudy or absent over every hole pixel: restored unguided.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Optional, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.match import mask_path_for
from transforms.raster_io import gdal_driver, local_copy
from transforms.scaling import to_unit, value_range

PLACEHOLDERS = ("stem", "dir", "date")
RESAMPLING = ("bilinear", "nearest")


class GuideError(ValueError):
  """A guide that exists but cannot serve this target (dead letter)."""


def check_template(template: str, date: Optional[str]) -> str:
  """The template with ``{date}`` filled; raises ValueError for placeholders
  that cannot resolve (unknown names, ``{date}`` without ``--date``, bad braces)."""
  try:
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
  except ValueError as e:
    raise ValueError(f"guide template {template!r}: {e}") from e
  bad = [f for f in fields if f not in PLACEHOLDERS]
  if bad:
    raise ValueError(f"guide template {template!r} has unknown placeholders {bad}; "
                     f"known: {{stem}}, {{dir}}, {{date}}")
  if "date" in fields:
    if not date:
      raise ValueError(f"guide template {template!r} has {{date}} but no --date was given")
    template = template.replace("{date}", date)
  return template


@dataclasses.dataclass(frozen=True)
class GuideSpec:
  """Where guides are and how they are read.

  Attributes:
    templates: Guide templates in order of preference (``{date}`` filled).
    mask_template: The guide's cloud masks (non-zero = cloud), relative to
      the guide's path; None = the guide's no-data only.
    bands: ``--bands`` (1-based), applied to the guide too; empty = all.
    value_range: The 0…1 scaling, or None for the dtype's range.
    resampling: ``bilinear`` or ``nearest`` for guides on another grid.
  """

  templates: Sequence[str] = ()
  mask_template: Optional[str] = None
  bands: Sequence[int] = ()
  value_range: Optional[tuple[float, float]] = None
  resampling: str = "bilinear"

  def __post_init__(self):
    if self.resampling not in RESAMPLING:
      raise ValueError(f"guide resampling must be one of {RESAMPLING}, got {self.resampling!r}")


@dataclasses.dataclass(frozen=True)
class GuideRef:
  """A resolved guide for one target: its path and its mask's path (or None)."""

  path: str
  mask_path: Optional[str] = None


def resolve(image_path: str, spec: GuideSpec) -> Optional[GuideRef]:
  """The first guide that exists for ``image_path``, or None."""
  for template in spec.templates:
    path = mask_path_for(image_path, template)
    if FileSystems.exists(path):
      mask = mask_path_for(path, spec.mask_template) if spec.mask_template else None
      if mask is not None and not FileSystems.exists(mask):
        raise GuideError(f"guide mask {mask} not found")
      return GuideRef(path=path, mask_path=mask)
  return None


@dataclasses.dataclass(frozen=True)
class Grid:
  """The target's grid: ``crs`` (WKT or None), ``transform`` (6 affine numbers or None), size."""

  crs: Optional[str]
  transform: Optional[tuple[float, ...]]
  height: int
  width: int

  @classmethod
  def of(cls, profile: dict, height: int, width: int) -> "Grid":
    t = profile.get("transform")
    return cls(profile.get("crs"), tuple(t) if t else None, height, width)


class AlignedGuide:
  """An open guide (and its mask) read on the target's grid, by windows.

  Use as a context manager. :meth:`read` returns ``(values [h, w, C] float32
  0…1, valid [h, w] bool)`` for a window of the target.
  """

  def __init__(self, ref: GuideRef, grid: Grid, bands: int, dtype: str, spec: GuideSpec):
    self._ref, self._grid, self._bands, self._dtype, self._spec = ref, grid, bands, dtype, spec
    self._stack: list = []
    self._temps: list[str] = []

  def _open(self, path: str):
    import rasterio  # pylint: disable=import-outside-toplevel
    local, temp = local_copy(path)
    if temp:
      self._temps.append(local)
    src = rasterio.open(local, driver=gdal_driver(path))
    self._stack.append(src)
    return src

  def _warp(self, src, resampling: str, like=None):
    """``src`` on the target's grid (a WarpedVRT), or ``src`` itself when no warp is needed."""
    # pylint: disable=import-outside-toplevel
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    g = self._grid
    src_crs = src.crs or (like.crs if like is not None else None)
    src_transform = src.transform if src.crs else (like.transform if like is not None else None)
    if g.crs is None or src_crs is None:
      if (src.height, src.width) != (g.height, g.width):
        raise GuideError(f"{src.name} is {src.width}x{src.height} but the image is "
                         f"{g.width}x{g.height}; without georeferencing the guide must be the same size")
      return src
    kwargs = dict(crs=g.crs,
                  transform=Affine(*g.transform),
                  width=g.width,
                  height=g.height,
                  resampling=getattr(Resampling, resampling))
    if src.crs is None:
      kwargs.update(src_crs=src_crs, src_transform=src_transform)
    vrt = WarpedVRT(src, **kwargs)
    self._stack.append(vrt)
    return vrt

  def __enter__(self) -> "AlignedGuide":
    try:
      self._setup()
    except BaseException:
      self.close()
      raise
    return self

  def _setup(self) -> None:
    import rasterio  # pylint: disable=import-outside-toplevel
    from rasterio.warp import transform_bounds  # pylint: disable=import-outside-toplevel
    spec, g = self._spec, self._grid
    try:
      src = self._open(self._ref.path)
    except rasterio.errors.RasterioError as e:
      raise GuideError(f"guide {self._ref.path} is not a readable raster: {e}") from e
    if spec.bands:
      bad = [b for b in spec.bands if not 1 <= b <= src.count]
      if bad:
        raise GuideError(f"guide {self._ref.path} has {src.count} bands; --bands {list(spec.bands)} "
                         "does not fit it")
      self._indexes = list(spec.bands)
    elif src.count == self._bands:
      self._indexes = list(range(1, self._bands + 1))
    else:
      raise GuideError(f"guide {self._ref.path} has {src.count} bands, the image {self._bands}; "
                       "select the same bands of both with --bands")
    if src.dtypes[0] != self._dtype and not spec.value_range:
      raise GuideError(f"guide {self._ref.path} is {src.dtypes[0]}, the image {self._dtype}; "
                       "pass --value-range to scale both the same way")
    if g.crs is not None and src.crs is not None:
      from affine import Affine  # pylint: disable=import-outside-toplevel
      t = Affine(*g.transform)
      xs = [t.c, t.c + t.a * g.width]
      ys = [t.f, t.f + t.e * g.height]
      left, bottom, right, top = transform_bounds(src.crs, g.crs, *src.bounds)
      if right <= min(xs) or left >= max(xs) or top <= min(ys) or bottom >= max(ys):
        raise GuideError(f"guide {self._ref.path} does not overlap the image")
    self._src_nodata = src.nodata
    self._guide = self._warp(src, spec.resampling)
    self._mask = None
    if self._ref.mask_path:
      try:
        m = self._open(self._ref.mask_path)
      except rasterio.errors.RasterioError as e:
        raise GuideError(f"guide mask {self._ref.mask_path} is not a readable raster: {e}") from e
      if m.crs is None and (m.height, m.width) != (src.height, src.width):
        raise GuideError(f"guide mask {self._ref.mask_path} is {m.width}x{m.height}, "
                         f"the guide {src.width}x{src.height}")
      self._mask = self._warp(m, "nearest", like=src)

  def read(self, y: int, x: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The guide over target rows ``[y, y+h)``, columns ``[x, x+w)`` (clipped to the target)."""
    from rasterio.windows import Window as RWindow  # pylint: disable=import-outside-toplevel
    win = RWindow(x, y, w, h)
    raw = np.moveaxis(self._guide.read(indexes=self._indexes, window=win), 0, -1)
    valid = self._guide.dataset_mask(window=win) > 0
    if raw.dtype.kind == "f":
      valid &= np.isfinite(raw).all(axis=2)
    if self._src_nodata is not None and not np.isnan(self._src_nodata):
      valid &= ~np.all(raw == np.asarray(self._src_nodata).astype(raw.dtype), axis=2)
    if self._mask is not None:
      valid &= self._mask.read(1, window=win) == 0
    lo, hi = value_range(str(raw.dtype), self._spec.value_range)
    unit = np.clip(to_unit(raw, lo, hi), 0.0, 1.0)
    return np.where(valid[..., None], unit, 0.0).astype(np.float32), valid

  def close(self) -> None:
    import os  # pylint: disable=import-outside-toplevel
    for obj in reversed(self._stack):
      obj.close()
    self._stack = []
    for t in self._temps:
      if os.path.exists(t):
        os.remove(t)

  def __exit__(self, *exc) -> None:
    self.close()


def read_whole(ref: GuideRef, grid: Grid, bands: int, dtype: str, spec: GuideSpec) -> tuple[np.ndarray, np.ndarray]:
  """The whole guide on the target's grid: ``(values [H, W, C] 0…1, valid [H, W] float32)``;
  ``valid`` may be all 0 (a guide cloudy everywhere over the target).

  Raises:
    GuideError: it cannot serve this target (no overlap, bands, dtype).
  """
  with AlignedGuide(ref, grid, bands, dtype, spec) as g:
    values, valid = g.read(0, 0, grid.height, grid.width)
  return values, valid.astype(np.float32)
