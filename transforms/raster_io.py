"""Reading and writing rasters on any Beam filesystem (local, gs://, s3://).

Pillow reads and writes PNG and JPEG; rasterio (GDAL) reads and writes TIFF
and GeoTIFF with their georeferencing. Bytes move through
``apache_beam.io.filesystems.FileSystems``, so the same code serves local
paths and object storage. Writes are atomic (:mod:`transforms.atomic_write`),
so a killed run never leaves a half-written tile under its final name.
"""

from __future__ import annotations

import functools
import io
import os
import posixpath
import re
import struct
import tempfile
from typing import Any, Optional

import numpy as np
from apache_beam.io.filesystems import FileSystems

TIFF_EXTS = (".tif", ".tiff", ".gtiff")
PIL_EXTS = (".png", ".jpg", ".jpeg")
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32")
# The one GDAL driver each extension may be read with. GDAL otherwise opens
# whatever format the bytes are: a VRT named .tif would read any local file
# it names into the output, a format with sidecars other files beside it.
GDAL_DRIVERS = {**{e: "GTiff" for e in TIFF_EXTS}, ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


class DecodeError(ValueError):
  """A file could not be read as a raster; the message says why."""


def pil_reason(error: Exception) -> str:
  """Pillow's message without the in-memory object it names (``<_io.BytesIO object at 0x7f…>``):
  the same failure reads the same in every run, so the summary counts it as one reason."""
  return re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(error))


def gdal_driver(path_or_ext: str) -> str:
  """The GDAL driver an input with this path's (or this) extension is read with (:data:`GDAL_DRIVERS`).

  Raises:
    DecodeError: an extension cloudfill does not read.
  """
  ext = (path_or_ext if path_or_ext.startswith(".") else split_ext(path_or_ext)[1]).lower()
  if ext not in GDAL_DRIVERS:
    raise DecodeError(f"unsupported file extension {ext!r}; expected one of {TIFF_EXTS + PIL_EXTS}")
  return GDAL_DRIVERS[ext]


def split_ext(path: str) -> tuple[str, str]:
  """Returns (stem, extension) of a path or URI's file name."""
  name = posixpath.basename(path.rstrip("/"))
  stem, ext = os.path.splitext(name)
  return stem, ext


def read_bytes(path: str) -> bytes:
  with FileSystems.open(path, mime_type="application/octet-stream", compression_type="uncompressed") as f:
    return f.read()


def delete_folder(folder: str) -> None:
  """Deletes ``folder`` and what is in it, its name taken literally (never a glob)."""
  if FileSystems.get_scheme(folder) is None:
    import shutil  # pylint: disable=import-outside-toplevel
    shutil.rmtree(folder, ignore_errors=True)
    return
  literal = "".join(f"[{c}]" if c in "[?*" else c for c in folder.rstrip("/"))
  found = FileSystems.match([literal + "/**"])[0].metadata_list
  if found:
    FileSystems.delete([m.path for m in found])


def decode_raster(data: bytes, ext: str) -> tuple[np.ndarray, dict[str, Any]]:
  """Decodes raster bytes to ``[H, W, C]`` and a profile.

  Raises:
    DecodeError: corrupt bytes, unsupported format or dtype.
  """
  if not data:
    raise DecodeError("empty file (0 bytes)")
  ext = ext.lower()
  if ext in TIFF_EXTS:
    return _decode_tiff(data, ext)
  if ext in PIL_EXTS:
    return decode_pil(data, ext)
  raise DecodeError(f"unsupported file extension {ext!r}; expected one of "
                    f"{TIFF_EXTS + PIL_EXTS}")


def _decode_tiff(data: bytes, ext: str) -> tuple[np.ndarray, dict[str, Any]]:
  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  try:
    with MemoryFile(data) as mem, mem.open(driver=gdal_driver(ext)) as src:
      profile = tiff_profile(src, ext)
      arr = src.read()  # [C, H, W]
  except DecodeError:
    raise
  except (rasterio.errors.RasterioError, ValueError, MemoryError) as e:
    raise DecodeError(f"not a readable TIFF: {e}") from e
  return np.ascontiguousarray(np.moveaxis(arr, 0, -1)), profile


# Metadata domains GDAL manages itself (rewritten on every write).
_GDAL_DOMAINS = ("IMAGE_STRUCTURE", "DERIVED_SUBDATASETS", "SUBDATASETS", "RPC")


def tiff_profile(src, ext: str) -> dict[str, Any]:
  """The profile of an open rasterio dataset (see :class:`records.Tile`).

  Besides CRS, transform, no-data and descriptions it keeps what a GeoTIFF
  may carry and an output must not lose: ground control points (``gcps``:
  ``[row, col, x, y, z, id, info]`` each, in ``gcp_crs``), RPCs, per-band
  ``band_meta`` (scale, offset, unit, tags) and namespaced tag domains
  (``tag_domains``).
  """
  if len(set(src.dtypes)) != 1:
    raise DecodeError(f"bands of mixed dtypes {src.dtypes}")
  gcps, gcp_crs = src.gcps
  profile = {
      "driver": "GTiff",
      "dtype": src.dtypes[0],
      "nodata": src.nodata,
      "crs": src.crs.to_wkt() if src.crs else None,
      "transform": list(src.transform)[:6] if src.crs or not src.transform.is_identity else None,
      "descriptions": list(src.descriptions),
      "ext": ext,
      "tags": dict(src.tags()),
      "height": src.height,
      "width": src.width,
      "count": src.count,
      # Kept on output unless --cog/--co say otherwise (transforms.geotiff_out).
      "compress": src.compression.value if src.compression else None,
      "overviews": list(src.overviews(1)) if src.count else [],
  }
  if gcps:
    profile["gcps"] = [[g.row, g.col, g.x, g.y, g.z, g.id, g.info] for g in gcps]
    profile["gcp_crs"] = gcp_crs.to_wkt() if gcp_crs else None
    profile["transform"] = None  # The GCPs are the georeferencing.
  if src.rpcs:
    profile["rpcs"] = src.rpcs.to_gdal()
  profile["band_meta"] = [{
      "scale": src.scales[i],
      "offset": src.offsets[i],
      "unit": src.units[i],
      "tags": dict(src.tags(i + 1))
  } for i in range(src.count)]
  domains = {}
  for ns in src.tag_namespaces() or []:
    if ns and ns not in _GDAL_DOMAINS and not ns.startswith("xml:"):
      domains[ns] = dict(src.tags(ns=ns))
  if domains:
    profile["tag_domains"] = domains
  return profile


def select_bands(profile: dict[str, Any], band_index) -> dict[str, Any]:
  """The profile with its per-band metadata (``band_meta``) for ``band_index`` only."""
  meta = profile.get("band_meta")
  if not meta:
    return profile
  return dict(profile, band_meta=[meta[i] for i in band_index])


def local_copy(path: str) -> tuple[str, bool]:
  """A local file with the contents of ``path``: (local path, is a temp copy).

  Local paths are returned as they are; object-storage files are streamed to
  a temporary file in chunks, so memory does not grow with the file.
  """
  if FileSystems.get_scheme(path) is None:
    return path, False
  _, ext = split_ext(path)
  fd, tmp = tempfile.mkstemp(prefix="cloudfill-", suffix=ext)
  with os.fdopen(fd, "wb") as dst, FileSystems.open(path, compression_type="uncompressed") as src:
    while chunk := src.read(1 << 24):
      dst.write(chunk)
  return tmp, True


def upload_file_atomic(local_path: str, dest: str) -> None:
  """Moves a finished local file to ``dest`` so ``dest`` is absent or complete."""
  if FileSystems.get_scheme(dest) is None:
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    os.replace(local_path, dest)
    return
  with open(local_path, "rb") as src, FileSystems.create(dest,
                                                         mime_type="application/octet-stream",
                                                         compression_type="uncompressed") as dst:
    while chunk := src.read(1 << 24):
      dst.write(chunk)
  os.remove(local_path)


def decode_pil(data: bytes, ext: str, palette: str = "rgb") -> tuple[np.ndarray, dict[str, Any]]:
  """PNG/JPEG bytes to ``[H, W, C]``; ``palette="index"`` keeps a palette
  image's indices (masks) instead of its colours."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
      fmt = im.format
      if im.mode in ("P", "PA") and palette == "index":
        if im.mode == "PA":
          im = im.getchannel(0)
      elif im.mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
      elif im.mode in ("1",):
        im = im.convert("L")
      arr = np.asarray(im)
  except Image.DecompressionBombError as e:
    raise ValueError(f"header claims too many pixels: {e}") from e
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
    raise DecodeError(f"not a readable {ext} image: {pil_reason(e)}") from e
  if arr.dtype == np.int32:  # Pillow's "I" mode for 16-bit PNGs.
    arr = arr.astype(np.uint16)
  elif arr.dtype == ">u2" or arr.dtype == "<u2":
    arr = arr.astype(np.uint16)
  if arr.ndim == 2:
    arr = arr[:, :, None]
  return np.ascontiguousarray(arr), plain_profile(fmt or ext.lstrip(".").upper(), arr, ext)


def plain_profile(driver: str, arr: np.ndarray, ext: str) -> dict:
  """The profile of a raster without georeferencing, no-data, band descriptions or tags
  (PNG and other Pillow formats), for ``arr [H, W, C]`` read from a ``ext`` file."""
  return {
      "driver": driver,
      "dtype": str(arr.dtype),
      "nodata": None,
      "crs": None,
      "transform": None,
      "descriptions": [None] * arr.shape[2],
      "ext": ext,
      "tags": {}
  }


def encode_raster(image: np.ndarray, profile: dict[str, Any], tags: Optional[dict[str, str]] = None) -> bytes:
  """Encodes ``[H, W, C]`` in the input's format with its profile kept."""
  ext = profile["ext"].lower()
  if ext in TIFF_EXTS:
    return _encode_tiff(image, profile, tags or {})
  return _encode_pil(image, profile, tags or {})


def tiff_write_kwargs(profile: dict[str, Any], h: int, w: int, c: int) -> dict[str, Any]:
  """rasterio ``open(..., "w")`` arguments that keep the input's profile."""
  from affine import Affine  # pylint: disable=import-outside-toplevel
  # Deflate at level 1: readable everywhere, and 1.4x faster to write than
  # the default level 6 (benchmarks/speed/stages.py).
  kwargs: dict[str, Any] = dict(driver="GTiff",
                                height=h,
                                width=w,
                                count=c,
                                dtype=profile["dtype"],
                                compress="deflate",
                                zlevel=1)
  if h >= 256 and w >= 256:
    kwargs.update(tiled=True, blockxsize=256, blockysize=256)
  if profile.get("crs"):
    kwargs["crs"] = profile["crs"]
  if profile.get("transform") and not profile.get("gcps"):
    kwargs["transform"] = Affine(*profile["transform"])
  if profile.get("nodata") is not None:
    kwargs["nodata"] = profile["nodata"]
  if h * w * c * np.dtype(profile["dtype"]).itemsize > 3_500_000_000:
    kwargs["BIGTIFF"] = "YES"
  return kwargs


def finish_tiff(dst, profile: dict[str, Any], tags: dict[str, str]) -> None:
  """Band descriptions, tags and the rest of the input's metadata (see
  :func:`tiff_profile`) on an output GeoTIFF open for writing."""
  from rasterio.control import GroundControlPoint  # pylint: disable=import-outside-toplevel
  from rasterio.crs import CRS  # pylint: disable=import-outside-toplevel
  for i, d in enumerate(profile.get("descriptions") or [], start=1):
    if d and i <= dst.count:
      dst.set_band_description(i, d)
  if profile.get("gcps"):
    gcps = [GroundControlPoint(row=g[0], col=g[1], x=g[2], y=g[3], z=g[4], id=g[5], info=g[6]) for g in profile["gcps"]]
    dst.gcps = (gcps, CRS.from_wkt(profile["gcp_crs"]) if profile.get("gcp_crs") else None)
  if profile.get("rpcs"):
    from rasterio.rpc import RPC  # pylint: disable=import-outside-toplevel
    dst.rpcs = RPC.from_gdal(profile["rpcs"])
  meta = (profile.get("band_meta") or [])[:dst.count]
  if meta and len(meta) == dst.count:
    if any(m["scale"] not in (None, 1.0) for m in meta):
      dst.scales = [1.0 if m["scale"] is None else m["scale"] for m in meta]
    if any(m["offset"] not in (None, 0.0) for m in meta):
      dst.offsets = [0.0 if m["offset"] is None else m["offset"] for m in meta]
    if any(m["unit"] for m in meta):
      dst.units = [m["unit"] or "" for m in meta]
    for i, m in enumerate(meta, start=1):
      if m["tags"]:
        dst.update_tags(i, **m["tags"])
  for ns, values in (profile.get("tag_domains") or {}).items():
    if values:
      dst.update_tags(ns=ns, **values)
  all_tags = {k: v for k, v in (profile.get("tags") or {}).items()}
  all_tags.update(tags)
  if all_tags:
    dst.update_tags(**all_tags)


def _encode_tiff(image: np.ndarray, profile: dict[str, Any], tags: dict[str, str]) -> bytes:
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  h, w, c = image.shape
  with MemoryFile() as mem:
    with mem.open(**tiff_write_kwargs(profile, h, w, c)) as dst:
      dst.write(np.moveaxis(image, -1, 0))
      finish_tiff(dst, profile, tags)
    return mem.read()


def _encode_pil(image: np.ndarray, profile: dict[str, Any], tags: dict[str, str]) -> bytes:
  from PIL import Image, PngImagePlugin  # pylint: disable=import-outside-toplevel
  if profile["ext"].lower() == ".png" and image.dtype == np.uint16 and image.shape[2] > 1:
    return _encode_png16(image, tags)
  arr = image[:, :, 0] if image.shape[2] == 1 else image
  im = Image.fromarray(arr)
  buf = io.BytesIO()
  ext = profile["ext"].lower()
  if ext == ".png":
    info = PngImagePlugin.PngInfo()
    for k, v in tags.items():
      info.add_text(k, str(v))
    im.save(buf, format="PNG", pnginfo=info)
  else:
    im.save(buf, format="JPEG", quality=95)
  return buf.getvalue()


@functools.cache
def _ignore_not_georeferenced() -> None:
  """A PNG has no georeferencing to lose: rasterio's warning is silenced once,
  for the process. Not ``warnings.catch_warnings()`` around each write: that
  swaps the process's filters and is not thread-safe (tiles are written on
  several threads: :mod:`transforms.pooled`)."""
  import warnings  # pylint: disable=import-outside-toplevel

  from rasterio.errors import NotGeoreferencedWarning  # pylint: disable=import-outside-toplevel
  warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


def _encode_png16(image: np.ndarray, tags: dict[str, str]) -> bytes:
  """16-bit colour PNG through GDAL (Pillow cannot write 48/64-bit PNG);
  tags become PNG text chunks, as Pillow writes them."""
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  _ignore_not_georeferenced()
  h, w, c = image.shape
  with MemoryFile() as mem:
    with mem.open(driver="PNG", height=h, width=w, count=c, dtype="uint16", WRITE_METADATA_AS_TEXT="YES") as dst:
      dst.write(np.moveaxis(image, -1, 0))
      if tags:
        dst.update_tags(**{k: str(v) for k, v in tags.items()})
    return mem.read()


def read_tags_at(path: str) -> dict[str, str]:
  """The metadata tags of a raster file (TIFF tags, PNG text); {} when it is
  not a regular, readable raster. Local files are read from their path (the
  header and tags only)."""
  import stat  # pylint: disable=import-outside-toplevel
  ext = split_ext(path)[1].lower()
  if FileSystems.get_scheme(path) is not None:
    return read_tags(read_bytes(path), ext)
  try:
    if not stat.S_ISREG(os.stat(path).st_mode):
      return {}
    if ext in TIFF_EXTS:
      import rasterio  # pylint: disable=import-outside-toplevel
      with rasterio.open(path, driver=gdal_driver(ext)) as src:
        return dict(src.tags())
    if ext == ".png":
      from PIL import Image  # pylint: disable=import-outside-toplevel
      with Image.open(path) as im:
        im.load()
        return {k: str(v) for k, v in getattr(im, "text", {}).items()}
  except Exception:  # pylint: disable=broad-except
    return {}
  return {}


def read_tags(data: bytes, ext: str) -> dict[str, str]:
  """Reads the metadata tags of an encoded raster (TIFF tags, PNG text)."""
  ext = ext.lower()
  try:
    if ext in TIFF_EXTS:
      from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
      with MemoryFile(data) as mem, mem.open(driver=gdal_driver(ext)) as src:
        return dict(src.tags())
    if ext == ".png":
      from PIL import Image  # pylint: disable=import-outside-toplevel
      with Image.open(io.BytesIO(data)) as im:
        return {k: str(v) for k, v in getattr(im, "text", {}).items()}
  except Exception:  # pylint: disable=broad-except
    return {}
  return {}
