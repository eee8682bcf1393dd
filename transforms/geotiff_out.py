"""How restored GeoTIFFs are laid out: the input's layout, a COG, or as told.

By default an output keeps its input's compression (LZW stays LZW, an
uncompressed input stays uncompressed) and, when the input had internal
overviews, gets overviews at the same factors. ``--cog`` writes a
Cloud-Optimized GeoTIFF with GDAL's COG driver (tiled, internal overviews,
``LAYOUT=COG``). ``--co NAME=VALUE`` (repeatable, as in rio and GDAL) passes
creation options to GDAL and wins over both.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Optional, Sequence

import numpy as np

from transforms.raster_io import finish_tiff, tiff_profile, tiff_write_kwargs

# Input compressions kept as they are; any other (JPEG, WEBP, LERC…) may be
# lossy and would change known pixels: such outputs are deflated instead.
LOSSLESS = ("NONE", "LZW", "DEFLATE", "ZSTD", "PACKBITS", "LZMA")

# GDAL creation options that are layout, not content: they do not carry over
# to the COG driver, which lays out its own tiles.
_GTIFF_ONLY = ("TILED", "BLOCKXSIZE", "BLOCKYSIZE", "INTERLEAVE", "PHOTOMETRIC")


@dataclasses.dataclass(frozen=True)
class TiffSpec:
  """How GeoTIFF outputs are written.

  Attributes:
    cog: Write Cloud-Optimized GeoTIFFs (GDAL's COG driver).
    options: ``NAME=VALUE`` GDAL creation options (``--co``), applied last.
  """

  cog: bool = False
  options: Sequence[str] = ()

  def __post_init__(self):
    for o in self.options:
      if "=" not in o:
        raise ValueError(f"creation option {o!r} is not NAME=VALUE")

  def option_dict(self) -> dict[str, str]:
    return {k.strip().upper(): v.strip() for k, v in (o.split("=", 1) for o in self.options)}


def kept_compression(profile: dict[str, Any]) -> Optional[str]:
  """The input's compression if lossless (``"LZW"``…), ``"DEFLATE"`` if lossy, None if unknown."""
  if "compress" not in profile:
    return None
  name = str(profile["compress"] or "NONE").upper()
  return name if name in LOSSLESS else "DEFLATE"


def gtiff_kwargs(profile: dict[str, Any], h: int, w: int, c: int, spec: TiffSpec) -> dict[str, Any]:
  """rasterio ``open(..., "w")`` arguments for a GTiff: the input's layout, then ``--co``."""
  kwargs = tiff_write_kwargs(profile, h, w, c)
  kept = kept_compression(profile)
  if kept:  # Keep the input's compression (NONE: uncompressed).
    kwargs.pop("zlevel", None)
    kwargs["compress"] = kept.lower()
    if kept == "DEFLATE":
      kwargs["zlevel"] = 1
  for k, v in spec.option_dict().items():
    kwargs.pop(k.lower(), None)
    kwargs[k] = v
  if str(kwargs.get("compress", kwargs.get("COMPRESS", ""))).lower() not in ("deflate", "zstd"):
    kwargs.pop("zlevel", None)
  return kwargs


def cog_options(profile: dict[str, Any], spec: TiffSpec) -> dict[str, Any]:
  """Creation options of the COG driver: the input's compression, then ``--co``."""
  out: dict[str, Any] = {"COMPRESS": kept_compression(profile) or "DEFLATE", "BLOCKSIZE": "512", "OVERVIEWS": "AUTO"}
  if out["COMPRESS"] == "DEFLATE":
    out["LEVEL"] = "1"
  if np.dtype(profile.get("dtype", "uint8")).itemsize * max(1, profile.get("count") or 1) > 64:
    out["BIGTIFF"] = "IF_SAFER"
  out.update({k: v for k, v in spec.option_dict().items() if k not in _GTIFF_ONLY})
  return out


def add_overviews(dst, profile: dict[str, Any], spec: TiffSpec) -> None:
  """Overviews at the input's factors (plain GTiff outputs only)."""
  from rasterio.enums import Resampling  # pylint: disable=import-outside-toplevel
  factors = [int(f) for f in (profile.get("overviews") or []) if int(f) > 1]
  if factors and not spec.cog:
    dst.build_overviews(factors, Resampling.nearest)


def encode(image: np.ndarray, profile: dict[str, Any], tags: dict[str, str], spec: TiffSpec) -> bytes:
  """``[H, W, C]`` as GeoTIFF bytes, laid out per ``spec`` (see the module doc)."""
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  h, w, c = image.shape
  with MemoryFile() as mem:
    with mem.open(**gtiff_kwargs(profile, h, w, c, spec)) as dst:
      dst.write(np.moveaxis(image, -1, 0))
      finish_tiff(dst, profile, tags)
      add_overviews(dst, profile, spec)
    if not spec.cog:
      return mem.read()
    return to_cog_bytes(mem.name, profile, spec)


def to_cog_bytes(src_path: str, profile: dict[str, Any], spec: TiffSpec) -> bytes:
  """A finished GeoTIFF (any path GDAL reads) copied to a COG, as bytes."""
  import rasterio.shutil  # pylint: disable=import-outside-toplevel
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  with MemoryFile() as out:
    rasterio.shutil.copy(src_path, out.name, driver="COG", **cog_options(profile, spec))
    return out.read()


def finish_file(local_tmp: str, profile: dict[str, Any], spec: TiffSpec) -> None:
  """Turns a finished local GTiff into its final layout, in place.

  For ``--cog``, GDAL's COG driver copies it (it reads the source block by
  block, so memory stays bounded) and the copy replaces it; otherwise the
  input's overview factors are added.
  """
  import rasterio  # pylint: disable=import-outside-toplevel
  import rasterio.shutil  # pylint: disable=import-outside-toplevel
  if spec.cog:
    folder = os.path.dirname(os.path.abspath(local_tmp))
    fd, cog = tempfile.mkstemp(prefix=".cog-", suffix=".tif", dir=folder)
    os.close(fd)
    try:
      rasterio.shutil.copy(local_tmp, cog, driver="COG", **cog_options(profile, spec))
      os.replace(cog, local_tmp)
    finally:
      if os.path.exists(cog):
        os.remove(cog)
  elif profile.get("overviews"):
    with rasterio.open(local_tmp, "r+") as dst:
      add_overviews(dst, profile, spec)


def layout(path: str) -> dict[str, Optional[str]]:
  """``{"compress", "layout", "overviews"}`` of a GeoTIFF on disk (for tests and the report)."""
  import rasterio  # pylint: disable=import-outside-toplevel
  with rasterio.open(path) as src:
    structure = src.tags(ns="IMAGE_STRUCTURE")
    return {
        "compress": structure.get("COMPRESSION"),
        "layout": structure.get("LAYOUT"),
        "overviews": ",".join(map(str, src.overviews(1))) or None
    }


def check_options(spec: TiffSpec) -> None:
  """Refuses ``--co`` options GDAL would refuse or ignore, at launch rather than at every tile's write.

  A 256² three-band uint16 deflated GeoTIFF is written with ``spec``; an
  error (``BLOCKXSIZE=7``) or a GDAL warning that an option or value is not
  supported (``COMPRESS=NOPE``, ``NOSUCH=1``: GDAL goes on without them) is
  a usage error.

  Raises:
    ValueError: the option and GDAL's words.
  """
  import logging  # pylint: disable=import-outside-toplevel

  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  from rasterio.transform import from_origin  # pylint: disable=import-outside-toplevel
  if not spec.options:
    return
  refused: list[str] = []

  class _Gdal(logging.Handler):

    def emit(self, record):
      if "CPLE_NotSupported" in record.getMessage() or "CPLE_IllegalArg" in record.getMessage():
        refused.append(record.getMessage())

  probe = np.zeros((256, 256, 3), np.uint16)
  layout = dict(height=256, width=256, count=3, dtype="uint16", compress="deflate", crs="EPSG:32633")
  with MemoryFile() as mem:
    with mem.open(driver="GTiff", transform=from_origin(0, 0, 30, 30), **layout) as dst:
      dst.write(np.moveaxis(probe, -1, 0))
    with mem.open() as src:
      profile = tiff_profile(src, ".tif")
  handler = _Gdal(level=logging.WARNING)
  logger = logging.getLogger("rasterio._env")
  level = logger.level
  logger.setLevel(logging.WARNING)  # Whatever -q set: GDAL's warnings are what is checked.
  logger.addHandler(handler)
  try:
    encode(probe, profile, {}, spec)
  except (rasterio.errors.RasterioError, ValueError, TypeError) as e:
    raise ValueError(f"--co {' --co '.join(spec.options)}: GDAL refused it: {e}") from e
  finally:
    logger.removeHandler(handler)
    logger.setLevel(level)
  if refused:
    raise ValueError(f"--co {' --co '.join(spec.options)}: {refused[0].split(' in ', 1)[-1]}")
