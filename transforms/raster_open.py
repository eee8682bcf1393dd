"""Opening untrusted raster files without hanging, bloating or losing data.

Every input (image, mask, reference) passes three checks before a pixel is
decoded:

1. :func:`check_regular`: a local path must be a regular file. A FIFO would
   block the reader forever, a directory or device cannot be a raster.
   Objects in a bucket are always regular.
2. :func:`read_header`: the pixel count from the file's header (TIFF via
   GDAL, PNG from its IHDR chunk, JPEG from Pillow's lazy open) is compared
   with ``--max-pixels`` before any decoding, so a 118-byte PNG claiming
   100000² pixels costs nothing.
3. Reads follow the window, not the file: local files are decoded from their
   path (a TIFF with gigabytes of padding after its strips reads only its
   strips); object-storage files are read with a byte cap.

16-bit colour PNGs (RGB, grey+alpha, RGBA) are decoded by GDAL's PNG driver:
Pillow opens them as 8-bit and would change every pixel.
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import struct
from typing import Any, Optional

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms.raster_io import (PIL_EXTS, TIFF_EXTS, DecodeError, decode_pil, gdal_driver, pil_reason, local_copy,
                                  plain_profile, split_ext, tiff_profile)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_EXTS = (".jpg", ".jpeg")
# Bytes an encoded file may hold per pixel before it is refused unread
# (object storage only: local files are read from their path). 8 bands of
# float64 uncompressed, plus room for headers and metadata.
MAX_BYTES_PER_PIXEL = 64
SLACK_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class RasterHeader:
  """What a file's header says, before any pixel is decoded.

  Attributes:
    height, width: Pixels.
    count: Bands (0 when the header does not say, e.g. JPEG before decoding).
    png_bit_depth: A PNG's bit depth and colour type, else None.
  """

  height: int
  width: int
  count: int = 0
  png_bit_depth: Optional[int] = None
  png_color_type: Optional[int] = None

  @property
  def pixels(self) -> int:
    return self.height * self.width


def is_local(path: str) -> bool:
  return FileSystems.get_scheme(path) is None


def check_regular(path: str) -> None:
  """Refuses a local path that is not a regular file, without opening it.

  Raises:
    DecodeError: a FIFO, socket, device or directory (symlinks are
      followed, so a symlink to a directory is a directory), or a path that
      cannot be stat'ed.
  """
  if not is_local(path):
    return
  try:
    mode = os.stat(path).st_mode
  except OSError as e:
    raise DecodeError(f"cannot read {path}: {e.strerror or e}") from e
  if stat.S_ISREG(mode):
    return
  kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket"
          if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
  raise DecodeError(f"{path} is {kind}, not a regular file: refused before opening")


def read_capped(path: str, limit: int) -> bytes:
  """The bytes of ``path``, refusing files larger than ``limit`` bytes.

  Raises:
    ValueError: the file is larger than ``limit``.
  """
  check_regular(path)
  out = io.BytesIO()
  with FileSystems.open(path, mime_type="application/octet-stream", compression_type="uncompressed") as f:
    while chunk := f.read(1 << 22):
      out.write(chunk)
      if out.tell() > limit:
        raise ValueError(f"{path} is larger than {limit} bytes, more than its pixel limit allows")
  return out.getvalue()


def byte_limit(max_pixels: int) -> int:
  return max_pixels * MAX_BYTES_PER_PIXEL + SLACK_BYTES


def _png_header(head: bytes) -> RasterHeader:
  if len(head) < 29 or head[12:16] != b"IHDR":
    raise DecodeError("not a readable .png image: no IHDR chunk")
  w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
  count = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype, 0)
  return RasterHeader(height=h, width=w, count=count, png_bit_depth=depth, png_color_type=ctype)


def check_pixels(header: RasterHeader, max_pixels: int, what: str = "") -> None:
  """Raises ValueError when the header's pixel count exceeds ``max_pixels``."""
  if header.height <= 0 or header.width <= 0:
    raise DecodeError(f"{what}header says {header.width}x{header.height} pixels")
  if header.pixels > max_pixels:
    raise ValueError(f"{what}{header.width}x{header.height} pixels exceeds the limit of "
                     f"{max_pixels} (--max-pixels); refused before decoding")


def _pil_header(src) -> RasterHeader:
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(src) as im:  # Lazy: reads the header only.
      return RasterHeader(height=im.height, width=im.width, count=len(im.getbands()))
  except Image.DecompressionBombError as e:
    raise ValueError(f"header claims too many pixels: {e}") from e
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as e:
    raise DecodeError(f"not a readable image: {pil_reason(e)}") from e


def decode_pil_file(path: str,
                    ext: str,
                    max_pixels: int,
                    palette: str = "rgb",
                    expect: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, dict[str, Any]]:
  """Decodes a PNG or JPEG after checking its header; 16-bit colour PNGs via GDAL.

  Args:
    path: Local path or URI.
    ext: Its extension.
    max_pixels: The pixel limit.
    palette: ``rgb`` expands palette images to colours (images); ``index``
      keeps the palette index (masks).
    expect: The (H, W) the header must say (a mask's image), or None.

  Raises:
    DecodeError: not a regular file (refused unopened, as :class:`OpenTiff`
      does), unreadable, or a 16-bit PNG GDAL cannot read.
    ValueError: over ``max_pixels``, or not the size ``expect`` says.
  """
  check_regular(path)  # A FIFO would block the read below forever.
  data = None if is_local(path) else read_capped(path, byte_limit(max_pixels))
  if ext.lower() == ".png":
    if data is None:
      with open(path, "rb") as f:
        head = f.read(64)
    else:
      head = data[:64]
    if not head:
      raise DecodeError("empty file (0 bytes)")
    if head[:8] != PNG_SIGNATURE:
      raise DecodeError("not a readable .png image: no PNG signature")
    header = _png_header(head)
  else:
    header = _pil_header(path if data is None else io.BytesIO(data))
  check_pixels(header, max_pixels, "mask: " if expect else "")
  if expect is not None and (header.height, header.width) != tuple(expect):
    raise ValueError(f"mask is {header.width}x{header.height} but the image is {expect[1]}x{expect[0]}")
  if header.png_bit_depth == 16 and header.png_color_type in (2, 4, 6):
    return _decode_png16(path if data is None else data, ext)
  if data is None:
    with open(path, "rb") as f:
      data = f.read()
  return decode_pil(data, ext, palette=palette)


def _decode_png16(src, ext: str) -> tuple[np.ndarray, dict[str, Any]]:
  """A 16-bit colour PNG through GDAL's PNG driver (Pillow would make it 8-bit)."""
  import warnings  # pylint: disable=import-outside-toplevel

  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)  # A PNG never is.
  try:
    if isinstance(src, bytes):
      with MemoryFile(src) as mem, mem.open(driver="PNG") as ds:
        arr = ds.read()
    else:
      with rasterio.open(src, driver="PNG") as ds:
        arr = ds.read()
  except rasterio.errors.RasterioError as e:
    raise DecodeError(f"not a readable 16-bit PNG: {e}") from e
  arr = np.ascontiguousarray(np.moveaxis(arr, 0, -1))
  return arr, plain_profile("PNG", arr, ext)


class OpenTiff:
  """A context manager: an open rasterio dataset for a TIFF on any filesystem.

  Local files are opened from their path; object-storage files under
  ``small_bytes`` are read (capped) into memory, larger ones are streamed to
  a temporary local copy (:attr:`local_path`, :attr:`temp` say which).
  """

  def __init__(self, path: str, size_bytes: int, max_pixels: int, small_bytes: int):
    self.path, self.size_bytes = path, size_bytes
    self.max_pixels, self.small_bytes = max_pixels, small_bytes
    self.local_path: Optional[str] = None
    self.temp = False
    self._stack = []

  def __enter__(self):
    import rasterio  # pylint: disable=import-outside-toplevel
    from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
    check_regular(self.path)
    try:
      if not is_local(self.path) and 0 < self.size_bytes < self.small_bytes:
        mem = MemoryFile(read_capped(self.path, self.small_bytes))
        self._stack.append(mem)
        src = mem.open(driver=gdal_driver(self.path))
      else:
        self.local_path, self.temp = local_copy(self.path)
        src = rasterio.open(self.local_path, driver=gdal_driver(self.path))
    except rasterio.errors.RasterioError as e:
      self._close()
      raise DecodeError(f"not a readable TIFF: {e}") from e
    except BaseException:
      self._close()
      raise
    self._stack.append(src)
    return src

  def _close(self):
    for obj in reversed(self._stack):
      obj.close()
    self._stack = []

  def remove_temp(self) -> None:
    if self.temp and self.local_path and os.path.exists(self.local_path):
      os.remove(self.local_path)

  def __exit__(self, *exc):
    self._close()
    return False


def tiff_header(src, ext: str, max_pixels: int, what: str = "") -> dict[str, Any]:
  """The profile of an open TIFF, after checking its pixel count."""
  check_pixels(RasterHeader(height=src.height, width=src.width, count=src.count), max_pixels, what)
  return tiff_profile(src, ext)


def read_mask_file(path: str, size_bytes: int, max_pixels: int, small_bytes: int, expect: tuple[int,
                                                                                                int]) -> np.ndarray:
  """A mask file as ``[H, W, C]``; its header must say ``expect`` = (H, W).

  Palette PNG masks are read by palette index, not colour.

  Raises:
    DecodeError, ValueError: unreadable, too large, or not the image's size.
  """
  import rasterio  # pylint: disable=import-outside-toplevel
  _, ext = split_ext(path)
  ext = ext.lower()

  def same_size(h: int, w: int) -> None:
    if (h, w) != tuple(expect):
      raise ValueError(f"mask is {w}x{h} but the image is {expect[1]}x{expect[0]}")

  if ext in TIFF_EXTS:
    opener = OpenTiff(path, size_bytes, max_pixels, small_bytes)
    try:
      with opener as src:
        tiff_header(src, ext, max_pixels, "mask: ")
        same_size(src.height, src.width)
        try:
          return np.ascontiguousarray(np.moveaxis(src.read(), 0, -1))
        except rasterio.errors.RasterioError as e:
          raise DecodeError(f"not a readable TIFF: {e}") from e
    finally:
      opener.remove_temp()
  if ext in PIL_EXTS:
    values, _ = decode_pil_file(path, ext, max_pixels, palette="index", expect=expect)
    return values
  raise DecodeError(f"unsupported mask extension {ext!r}; expected one of {TIFF_EXTS + PIL_EXTS}")
