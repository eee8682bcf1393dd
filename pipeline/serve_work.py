"""The work behind ``cloudfill serve``'s routes, one request at a time.

Each function takes the :class:`Service` (model behind its batcher, settings)
and a request's :class:`pipeline.serve_request.Inputs`, and returns bytes to
answer with; refusals are :class:`pipeline.serve_io.BadInput`. The restoration
itself is :func:`transforms.engine.restore_array`, the pipeline's stages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from typing import Optional

import numpy as np

from model_loader.contract import ModelCard
from pipeline.serve_io import (BadInput, decode_request, display_bands, display_png, downsample, probe, stretch_limits)
from pipeline.serve_request import Inputs
from transforms.decode import DecodeSpec
from transforms.engine import EngineSpec, restore_array
from transforms.incremental import provenance_tags
from transforms.masks import binarize
from transforms import geotiff_out
from transforms.raster_io import TIFF_EXTS, decode_raster, encode_raster, split_ext


@dataclasses.dataclass(frozen=True)
class ServeSpec:
  """How the server runs.

  Attributes:
    host, port: Where it listens (loopback unless told otherwise).
    root: Files under this folder may be picked by path; None: uploads only.
    max_pixels: Images (and masks, guides) with more pixels are refused from
      their header, before decoding.
    max_upload_bytes: Request bodies larger than this are refused (413).
    max_batch: Most windows in one model call.
    batch_wait_ms: How long a window waits for others to share its call.
    max_concurrent: Requests decoded and restored at once; the others wait
      their turn, so memory stays bounded (a 64 Mpx 3-band uint16 image is
      384 MiB of pixels, and decoding and compositing hold several copies).
    cors_origins: Origins allowed cross-origin requests; none by default.
    share_batches: Windows of concurrent requests share model calls. False
      (``--exact``): each model call serves one request, so every answer is
      byte-identical to that tile restored alone, whatever the load.
  """

  host: str = "127.0.0.1"
  port: int = 8080
  root: Optional[str] = None
  max_pixels: int = 64 * 1024 * 1024
  max_upload_bytes: int = 1024 << 20
  max_batch: int = 16
  max_concurrent: int = 8
  batch_wait_ms: float = 5.0
  cors_origins: tuple[str, ...] = ()
  share_batches: bool = True

  def __post_init__(self):
    if not 0 <= self.port < 65536:
      raise ValueError(f"--port {self.port} is not a port")
    if self.root is not None and not os.path.isdir(self.root):
      raise ValueError(f"--root {self.root} is not a folder")
    if (self.max_pixels < 1 or self.max_upload_bytes < 1 or self.max_batch < 1 or self.batch_wait_ms < 0 or
        self.max_concurrent < 1):
      raise ValueError("--max-pixels, --max-upload-mb, --max-batch and --max-concurrent must be positive")


@dataclasses.dataclass
class Service:
  """What the routes share: the model (behind its batcher), the settings, the temp folder."""

  spec: ServeSpec
  card: ModelCard
  predict: object  # MicroBatcher or any Predict callable.
  engine: EngineSpec
  decode: DecodeSpec
  temp: str


def _floats(text: Optional[str], n: int, what: str) -> Optional[tuple[float, ...]]:
  if not text:
    return None
  try:
    values = tuple(float(t) for t in text.split(","))
  except ValueError as e:
    raise BadInput(400, "bad_field", f"{what} {text!r}: expected {n} comma-separated numbers") from e
  if len(values) != n:
    raise BadInput(400, "bad_field", f"{what} {text!r}: expected {n} numbers")
  return values


def _display_args(fields: dict, image: np.ndarray, mask: Optional[np.ndarray]):
  """(bands, limits) for a display picture from the request's fields."""
  asked = None
  if fields.get("bands"):
    try:
      asked = [int(t) for t in fields["bands"].split(",")]
    except ValueError as e:
      raise BadInput(400, "bad_field", f"bands {fields['bands']!r}: expected 1-based integers") from e
  bands = display_bands(image.shape[2], asked)
  if fields.get("limits"):
    try:
      limits = [tuple(map(float, pair)) for pair in json.loads(fields["limits"])]
    except (ValueError, TypeError) as e:
      raise BadInput(400, "bad_field", f"limits {fields['limits']!r}: expected [[lo, hi], …]") from e
    if len(limits) != len(bands) or any(len(p) != 2 or p[1] <= p[0] for p in limits):
      raise BadInput(400, "bad_field", "limits: one [lo, hi] with hi > lo per displayed band")
    return bands, limits
  default = (0.0, 100.0) if image.dtype == np.uint8 else (2.0, 98.0)
  pct = _floats(fields.get("percentiles"), 2, "percentiles") or default
  if not 0 <= pct[0] < pct[1] <= 100:
    raise BadInput(400, "bad_field", f"percentiles {pct}: expected 0 <= low < high <= 100")
  return bands, stretch_limits(image, mask, bands, pct)


def _checked_inputs(svc: Service, inputs: Inputs) -> tuple[int, int]:
  """Probes every file from its header; returns the image's (height, width)."""
  h, w, _ = probe(inputs.image, "image", svc.spec.max_pixels)
  if inputs.mask:
    mh, mw, _ = probe(inputs.mask, "mask", svc.spec.max_pixels)
    if (mh, mw) != (h, w):
      raise BadInput(422, "size_mismatch", f"mask is {mw}x{mh} but the image is {w}x{h}")
  if inputs.guide:
    if not getattr(svc.card, "guided", False):
      raise BadInput(
          422, "no_guide_input", f"the model {svc.card.name} {svc.card.version} takes no "
          "guide (its card does not say guided: true)")
    gh, gw, _ = probe(inputs.guide, "guide", svc.spec.max_pixels)
    if (gh, gw) != (h, w):
      raise BadInput(422, "size_mismatch", f"guide is {gw}x{gh} but the image is {w}x{h}")
    # Refused rather than silently ignored until the engine passes guides on.
    raise BadInput(422, "guide_unsupported", "this server does not pass guides to the model yet; "
                   "send the image and mask only")
  return h, w


def _safe_name(stem: str) -> str:
  """A file name for Content-Disposition: letters, digits, ``._-`` only."""
  return re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:200] or "restored"


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def restore_inputs(svc: Service, inputs: Inputs) -> tuple[bytes, str, dict]:
  """(encoded restored file, its file name, headers) for a restore request."""
  _checked_inputs(svc, inputs)
  tile = decode_request(inputs.image, inputs.mask, svc.decode, inputs.source, inputs.mtime)
  start = time.perf_counter()
  restored, windows = restore_array(tile.image, tile.mask, tile.profile, svc.predict, svc.engine, tile.full,
                                    tile.layout)  # Every band comes out.
  # The pipeline's own encoder and tags (transforms.write), so the bytes match `cloudfill run`.
  tags = provenance_tags(tile.pair, svc.card.version, svc.card.weights_sha256)
  if tile.profile["ext"].lower() in TIFF_EXTS:
    data = geotiff_out.encode(restored, tile.profile, tags, geotiff_out.TiffSpec())
  else:
    data = encode_raster(restored, tile.profile, tags)
  name = _safe_name(tile.pair.stem) + tile.profile["ext"]
  return data, name, {
      "X-Cloudfill-Windows": str(windows),
      "X-Cloudfill-Missing": str(int(tile.mask.sum())),
      "X-Cloudfill-Seconds": f"{time.perf_counter() - start:.3f}"
  }


def preview_inputs(svc: Service, inputs: Inputs) -> tuple[bytes, dict]:
  """A PNG of the tile restored at low resolution (one window a side at most)."""
  _checked_inputs(svc, inputs)
  tile = decode_request(inputs.image, inputs.mask, svc.decode, inputs.source, inputs.mtime)
  bands, limits = _display_args(inputs.fields, tile.image, tile.mask)
  small, small_mask, factor = downsample(tile.image, tile.mask, svc.card.window)
  if small_mask.any() and not small_mask.all():
    small, _ = restore_array(small, small_mask, tile.profile, svc.predict, svc.engine)
  return display_png(small, bands, limits), {"X-Cloudfill-Factor": str(factor)}


def display_inputs(svc: Service, inputs: Inputs) -> tuple[bytes, dict]:
  """An 8-bit PNG of the image and what the page needs to know of it."""
  h, w, _ = probe(inputs.image, "image", svc.spec.max_pixels)
  try:
    image, profile = decode_raster(_read(inputs.image), split_ext(inputs.image)[1])
  except ValueError as e:
    raise BadInput(400, "not_an_image", f"image: {e}") from e
  bands, limits = _display_args(inputs.fields, image, None)
  info = {
      "width": w,
      "height": h,
      "bands": image.shape[2],
      "dtype": profile["dtype"],
      "shown": [b + 1 for b in bands],
      "limits": limits,
      "nodata": profile.get("nodata"),
      "crs": bool(profile.get("crs")),
      "name": split_ext(inputs.source.removeprefix("upload:"))[0] + profile["ext"]
  }
  return display_png(image, bands, limits), {"X-Cloudfill-Info": json.dumps(info)}


def mask_inputs(svc: Service, inputs: Inputs) -> bytes:
  """A 0/255 PNG of a mask file's missing pixels (the profile's threshold)."""
  if not inputs.mask:
    raise BadInput(400, "no_mask", "send a mask file in the 'mask' field (or 'mask_path' under --root)")
  probe(inputs.mask, "mask", svc.spec.max_pixels)
  try:
    values, _ = decode_raster(_read(inputs.mask), split_ext(inputs.mask)[1])
  except ValueError as e:
    raise BadInput(400, "not_an_image", f"mask: {e}") from e
  size = _floats(inputs.fields.get("size"), 2, "size")
  if size and values.shape[:2] != (int(size[1]), int(size[0])):
    raise BadInput(422, "size_mismatch", f"mask is {values.shape[1]}x{values.shape[0]} "
                   f"but the image is {int(size[0])}x{int(size[1])}")
  missing = binarize(values, svc.decode.mask.threshold)
  return display_png(missing.astype(np.uint8)[:, :, None] * 255, [0], [(0.0, 255.0)])
