"""What ``cloudfill serve`` checks before it restores, and what it shows.

* :class:`BadInput`: a refusal with an HTTP status (4xx only), a short code
  and a reason; the server answers it as JSON.
* :func:`probe`: a file's size from its header only (rasterio for TIFF,
  Pillow for PNG/JPEG), so a decompression bomb is refused before decoding.
* :func:`confine`: a path under ``--root`` (no ``..``, no absolute paths, no
  symlink out of it).
* :func:`decode_request`: the image and mask decoded and validated by the
  pipeline's own :func:`transforms.decode.decode_pair`.
* :func:`display_png`, :func:`downsample`: the browser's 8-bit pictures of
  uint16 and multiband data, and the low-resolution preview's input.
"""

from __future__ import annotations

import io
import os
from typing import Optional, Sequence

import numpy as np

from transforms.decode import DecodeSpec, decode_pair
from transforms.raster_io import PIL_EXTS, TIFF_EXTS, DecodeError, gdal_driver, split_ext
from transforms.records import Tile, TilePair

IMAGE_EXTS = TIFF_EXTS + PIL_EXTS


class BadInput(Exception):
  """Input the server refuses: ``status`` (4xx), ``code`` and a reason."""

  def __init__(self, status: int, code: str, reason: str):
    super().__init__(reason)
    if not 400 <= status < 500:
      raise ValueError(f"BadInput takes a 4xx status, got {status}")
    self.status, self.code, self.reason = status, code, reason

  def to_json(self) -> dict:
    return {"error": self.code, "reason": self.reason}


def probe(path: str, what: str, max_pixels: int) -> tuple[int, int, int]:
  """``(height, width, bands)`` of the raster at ``path``, read from its header.

  Raises:
    BadInput: not an image (400), or more than ``max_pixels`` pixels (413).
  """
  ext = split_ext(path)[1].lower()
  if ext not in IMAGE_EXTS:
    raise BadInput(400, "not_an_image", f"{what}: unsupported file type {ext or '(none)'!r}; "
                   f"expected one of {', '.join(IMAGE_EXTS)}")
  try:
    if ext in TIFF_EXTS:
      import rasterio  # pylint: disable=import-outside-toplevel
      with rasterio.open(path, driver=gdal_driver(path)) as src:
        h, w, c = src.height, src.width, src.count
    else:
      from PIL import Image  # pylint: disable=import-outside-toplevel
      with Image.open(path) as im:  # Reads the header only.
        (w, h), c = im.size, len(im.getbands())
  except Exception as e:  # pylint: disable=broad-except
    if type(e).__name__ == "DecompressionBombError":
      raise BadInput(413, "too_large", f"{what}: {e}") from e
    raise BadInput(400, "not_an_image", f"{what} is not a readable {ext} image: {e}") from e
  if h * w > max_pixels:
    raise BadInput(413, "too_large", f"{what} is {w}x{h} = {w * h} pixels; the limit is {max_pixels} "
                   "(--max-pixels)")
  return h, w, c


def confine(root: Optional[str], rel: str) -> str:
  """The real path of ``rel`` under ``root``.

  Raises:
    BadInput: no ``--root``, an absolute path, ``..``, a path that leaves
      ``root`` through a symlink, or no such file (403/404).
  """
  if not root:
    raise BadInput(403, "no_root", "picking files needs the server started with --root DIR")
  if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")) or "\x00" in rel:
    raise BadInput(403, "outside_root", f"{rel!r}: give a path relative to --root")
  if ".." in rel.replace("\\", "/").split("/"):
    raise BadInput(403, "outside_root", f"{rel!r}: '..' is not allowed")
  base = os.path.realpath(root)
  real = os.path.realpath(os.path.join(base, rel))
  if os.path.commonpath([base, real]) != base:
    raise BadInput(403, "outside_root", f"{rel!r} leads outside --root (a symlink?)")
  if not os.path.isfile(real):
    raise BadInput(404, "not_found", f"{rel!r}: no such file under --root")
  return real


def list_root(root: Optional[str], limit: int = 2000) -> list[str]:
  """Image files under ``root``, relative, sorted; symlinks out of it are left out."""
  if not root:
    return []
  base = os.path.realpath(root)
  found = []
  for folder, dirs, files in os.walk(base):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in sorted(files):
      full = os.path.join(folder, name)
      if split_ext(name)[1].lower() not in IMAGE_EXTS:
        continue
      real = os.path.realpath(full)
      if os.path.commonpath([base, real]) == base and os.path.isfile(real):
        found.append(os.path.relpath(full, base))
      if len(found) >= limit:
        return found
  return found


def decode_request(image_path: str, mask_path: Optional[str], spec: DecodeSpec, source: str, mtime: float) -> Tile:
  """The pipeline's decode of one pair, its refusals turned into 4xx.

  Args:
    image_path, mask_path: Local files (probed already); no mask means the
      mask comes from the image (``spec.mask.source``).
    spec: The server's decode settings (from ``--config``), ``scene_pixels``
      0: a request is always decoded whole.
    source, mtime: Recorded in the output's provenance tags, as ``cloudfill
      run`` records the input's path and modification time.

  Raises:
    BadInput: undecodable (400), size or band mismatch (422), no cloud or
      all cloud (422).
  """
  stem = split_ext(source.removeprefix("upload:"))[0] or "image"
  pair = TilePair(image_path=image_path, stem=stem, mask_path=mask_path, mtime=mtime)
  try:
    tile = decode_pair(pair, spec)
  except DecodeError as e:
    who = "mask" if mask_path and str(e).startswith("mask ") else "image"
    raise BadInput(400, "not_an_image", f"{who}: {e}".replace(f"mask {mask_path}: ", "")) from e
  except (ValueError, MemoryError) as e:
    code = "size_mismatch" if "but the image is" in str(e) else "invalid"
    raise BadInput(422, code, str(e)) from e
  missing = int(tile.mask.sum())
  if missing == 0:
    raise BadInput(422, "no_cloud", "mask has no missing pixel: nothing to restore")
  if missing == tile.mask.size:
    raise BadInput(422, "all_cloud", "mask covers every pixel: nothing to restore from")
  tile.pair = TilePair(image_path=source, stem=stem, mask_path=mask_path, mtime=mtime)
  return tile


def stretch_limits(image: np.ndarray, mask: Optional[np.ndarray], bands: Sequence[int],
                   percentiles: tuple[float, float]) -> list[tuple[float, float]]:
  """Per displayed band, the values drawn as black and white.

  uint8 data is shown as it is (0…255) unless percentiles other than 0,100
  are asked for; other dtypes stretch between percentiles of the known,
  finite pixels.
  """
  lo_p, hi_p = percentiles
  out = []
  for b in bands:
    values = image[:, :, b]
    if mask is not None and (~mask).any():
      values = values[~mask]
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    if image.dtype == np.uint8 and (lo_p, hi_p) == (0.0, 100.0):
      out.append((0.0, 255.0))
      continue
    if values.size > 1_000_000:  # A strided sample is enough for percentiles.
      values = values[::values.size // 1_000_000]
    lo, hi = (np.percentile(values, [lo_p, hi_p]) if values.size else (0.0, 1.0))
    out.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))
  return out


def display_png(image: np.ndarray, bands: Sequence[int], limits: Sequence[tuple[float, float]]) -> bytes:
  """An 8-bit PNG of ``image`` ``[H, W, C]``: three bands as RGB, or one as grey."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  planes = []
  for b, (lo, hi) in zip(bands, limits):
    v = (image[:, :, b].astype(np.float32) - lo) * (255.0 / (hi - lo))
    planes.append(np.clip(np.nan_to_num(v, nan=0.0), 0, 255).astype(np.uint8))
  arr = np.stack(planes, axis=2) if len(planes) == 3 else planes[0]
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
  return buf.getvalue()


def display_bands(count: int, asked: Optional[Sequence[int]]) -> list[int]:
  """0-based bands to display from 1-based ``asked`` (1 or 3 of them).

  Raises:
    BadInput: a band out of range or a count other than 1 or 3 (422).
  """
  if not asked:
    return [0, 1, 2] if count >= 3 else [0]
  if len(asked) not in (1, 3) or any(not 1 <= b <= count for b in asked):
    raise BadInput(422, "bad_bands", f"display bands {list(asked)}: give 1 or 3 of 1..{count}")
  return [b - 1 for b in asked]


def downsample(image: np.ndarray, mask: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, int]:
  """A block-mean copy of ``image`` with at most ``side`` pixels a side.

  Returns:
    (``[h, w, C]`` in the input dtype, ``[h, w]`` bool mask (a block is
    missing when any of its pixels is), factor).
  """
  h, w = mask.shape
  f = max(1, -(-max(h, w) // side))
  if f == 1:
    return image, mask, 1
  hh, ww = h // f, w // f
  if hh == 0 or ww == 0:
    return image, mask, 1
  rows, cols = np.arange(0, hh * f, f), np.arange(0, ww * f, f)
  # Sums by block with reduceat: memory grows with the output, not with a
  # float copy of the whole image.
  sums = np.add.reduceat(image[:hh * f, :ww * f], rows, axis=0, dtype=np.float64)
  mean = np.add.reduceat(sums, cols, axis=1) / float(f * f)
  holes = np.maximum.reduceat(mask[:hh * f, :ww * f].view(np.uint8), rows, axis=0)
  small_mask = np.maximum.reduceat(holes, cols, axis=1).astype(bool)
  if image.dtype.kind in "iu":
    info = np.iinfo(image.dtype)
    small = np.clip(np.rint(mean), info.min, info.max).astype(image.dtype)
  else:
    small = mean.astype(image.dtype)
  return small, small_mask, f
