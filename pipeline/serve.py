"""``cloudfill serve``: the mask-drawing page and online inference.

    cloudfill serve [--model URI] [--config NAME] [--host 127.0.0.1] [--port 8080]
                    [--root DIR] [--max-pixels N] [--max-upload-mb N]

Routes:

* ``GET /``: the page (``pipeline/templates/serve.html`` + ``serve.js``).
* ``POST /v1/restore``: multipart ``image`` (or ``path`` under ``--root``),
  ``mask`` (or ``mask_path``; without one, the profile's mask source, e.g.
  no-data), optional ``guide`` -> the restored file, same format, dtype, bands
  and georeferencing, byte for byte what ``cloudfill run`` writes.
* ``POST /v1/preview``: the same fields -> a PNG quicklook restored at low
  resolution (at most one model window a side).
* ``POST /v1/display``: an image -> an 8-bit PNG for the browser (stretch,
  band choice); ``POST /v1/mask``: a mask file -> a 0/255 PNG of its missing
  pixels; ``GET /v1/files``: images under ``--root``; ``GET /healthz``.

Bad input is answered with a 4xx and JSON ``{"error", "reason"}``, never a 5xx.
The model is loaded once; windows of concurrent requests share model calls
(:mod:`pipeline.serve_batcher`). Decoding, windowing, compositing and encoding
are the pipeline's own functions (:mod:`transforms.engine`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from typing import Optional, Sequence

import numpy as np

from model_loader.contract import ModelCard
from pipeline.serve_io import (BadInput, decode_request, display_bands, display_png, downsample, list_root,
                               probe, stretch_limits)
from pipeline.serve_request import BodyLimit, Inputs, read_inputs
from transforms.decode import DecodeSpec
from transforms.engine import EngineSpec, restore_array
from transforms.incremental import provenance_tags
from transforms.raster_io import decode_raster, encode_raster, split_ext

LOG = logging.getLogger("cloudfill.serve")
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
MEDIA = {".tif": "image/tiff", ".tiff": "image/tiff", ".gtiff": "image/tiff", ".png": "image/png",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
    if (self.max_pixels < 1 or self.max_upload_bytes < 1 or self.max_batch < 1 or self.batch_wait_ms < 0
        or self.max_concurrent < 1):
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
      raise BadInput(422, "no_guide_input", f"the model {svc.card.name} {svc.card.version} takes no "
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
  restored, windows = restore_array(tile.image, tile.mask, tile.profile, svc.predict, svc.engine)
  data = encode_raster(restored, tile.profile, provenance_tags(tile.pair, svc.card.version))
  name = _safe_name(tile.pair.stem) + tile.profile["ext"]
  return data, name, {"X-Cloudfill-Windows": str(windows),
                      "X-Cloudfill-Missing": str(int(tile.mask.sum())),
                      "X-Cloudfill-Seconds": f"{time.perf_counter() - start:.3f}"}


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
  info = {"width": w, "height": h, "bands": image.shape[2], "dtype": profile["dtype"],
          "shown": [b + 1 for b in bands], "limits": limits, "nodata": profile.get("nodata"),
          "crs": bool(profile.get("crs")), "name": split_ext(inputs.source.removeprefix("upload:"))[0] + profile["ext"]}
  return display_png(image, bands, limits), {"X-Cloudfill-Info": json.dumps(info)}


def mask_inputs(svc: Service, inputs: Inputs) -> bytes:
  """A 0/255 PNG of a mask file's missing pixels (the profile's threshold)."""
  from transforms.masks import binarize  # pylint: disable=import-outside-toplevel
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


def load_service(spec: ServeSpec, model_uri: Optional[str], config: Optional[str]) -> Service:
  """Loads the model once, checks it on one window, starts the batcher.

  Raises:
    FileNotFoundError, ValueError: a bad model or profile.
  """
  # pylint: disable=import-outside-toplevel
  from model_loader import locate, native
  from pipeline.options import DEFAULTS, load_config
  from pipeline.serve_batcher import MicroBatcher
  from transforms.masks import MaskSpec
  from transforms.window import WindowSpec
  settings = dict(DEFAULTS, **load_config(config))
  uri = locate.resolve(model_uri or settings.get("model"))
  card = locate.read_card(uri)
  try:
    model = native.load(locate.stage_locally(uri))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"the model at {uri} failed to load: {e}") from e
  native.check_model(model, card.window, card.bands)
  vrange = tuple(settings["value_range"]) if settings.get("value_range") else None
  source = settings.get("mask_source") or "file"
  decode = DecodeSpec(mask=MaskSpec(source=source, threshold=settings["mask_threshold"],
                                    dilate=settings["dilate"] or 0, nodata=settings["nodata"]),
                      bands=tuple(settings["bands"] or ()), model_bands=card.bands,
                      nan_as_missing=bool(settings["nan_as_missing"]), max_pixels=spec.max_pixels,
                      scene_pixels=0)
  temp = tempfile.mkdtemp(prefix="cloudfill-serve-")
  return Service(spec=spec, card=card, predict=MicroBatcher(model, spec.max_batch, spec.batch_wait_ms / 1000,
                                                               share=spec.share_batches),
                 engine=EngineSpec(WindowSpec(size=card.window, overlap=card.overlap, value_range=vrange),
                                   batch_size=spec.max_batch),
                 decode=decode, temp=temp)


def create_app(svc: Service):
  """The Starlette application over a loaded :class:`Service`."""
  # pylint: disable=import-outside-toplevel
  import contextlib

  from starlette.applications import Starlette
  from starlette.concurrency import run_in_threadpool
  from starlette.responses import FileResponse, JSONResponse, Response
  from starlette.routing import Route

  def _decode_mask_spec(inputs: Inputs) -> Service:
    if inputs.mask is None and svc.decode.mask.source == "file":  # Fall back on the image's no-data.
      return dataclasses.replace(svc, decode=dataclasses.replace(
          svc.decode, mask=dataclasses.replace(svc.decode.mask, source="nodata")))
    if inputs.mask is not None and svc.decode.mask.source != "file":
      return dataclasses.replace(svc, decode=dataclasses.replace(
          svc.decode, mask=dataclasses.replace(svc.decode.mask, source="file")))
    return svc

  slots = threading.BoundedSemaphore(svc.spec.max_concurrent)

  def in_slot(work):
    def run(*args):
      with slots:
        return work(*args)
    return run

  def handler(work, need_image=True):
    async def endpoint(request):
      inputs = None
      try:
        inputs = await read_inputs(request, svc.temp, svc.spec.root, need_image)
        return await run_in_threadpool(in_slot(work), _decode_mask_spec(inputs), inputs)
      except BadInput as e:
        return JSONResponse(e.to_json(), status_code=e.status)
      except Exception:  # pylint: disable=broad-except
        LOG.exception("request failed")
        return JSONResponse({"error": "internal", "reason": "the server failed on this request; "
                                                            "see its log"}, status_code=500)
      finally:
        if inputs is not None:
          inputs.cleanup()
    return endpoint

  def restore(s, inputs):
    data, name, headers = restore_inputs(s, inputs)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(data, media_type=MEDIA.get(os.path.splitext(name)[1].lower(), "application/octet-stream"),
                    headers=headers)

  def preview(s, inputs):
    data, headers = preview_inputs(s, inputs)
    return Response(data, media_type="image/png", headers=headers)

  def display(s, inputs):
    data, headers = display_inputs(s, inputs)
    return Response(data, media_type="image/png", headers=headers)

  def mask(s, inputs):
    return Response(mask_inputs(s, inputs), media_type="image/png")

  async def healthz(_):
    stats = getattr(svc.predict, "stats", None)
    return JSONResponse({"status": "ok", "model": {"name": svc.card.name, "version": svc.card.version,
                                                   "bands": svc.card.bands, "window": svc.card.window},
                         "root": bool(svc.spec.root), "max_pixels": svc.spec.max_pixels,
                         "batches": dataclasses.asdict(stats) if stats else None})

  async def files(_):
    return JSONResponse({"files": await run_in_threadpool(list_root, svc.spec.root)})

  async def page(_):
    return FileResponse(os.path.join(TEMPLATES, "serve.html"), media_type="text/html")

  async def script(_):
    return FileResponse(os.path.join(TEMPLATES, "serve.js"), media_type="text/javascript")

  @contextlib.asynccontextmanager
  async def lifespan(_):
    try:
      yield
    finally:
      close = getattr(svc.predict, "close", None)
      if close:
        close()
      shutil.rmtree(svc.temp, ignore_errors=True)

  app = Starlette(routes=[
      Route("/", page), Route("/serve.js", script), Route("/healthz", healthz),
      Route("/v1/files", files), Route("/v1/restore", handler(restore), methods=["POST"]),
      Route("/v1/preview", handler(preview), methods=["POST"]),
      Route("/v1/display", handler(display), methods=["POST"]),
      Route("/v1/mask", handler(mask, need_image=False), methods=["POST"])], lifespan=lifespan)
  if svc.spec.cors_origins:
    from starlette.middleware.cors import CORSMiddleware
    app.add_middleware(CORSMiddleware, allow_origins=list(svc.spec.cors_origins), allow_methods=["GET", "POST"])
  app.add_middleware(BodyLimit, max_bytes=svc.spec.max_upload_bytes)
  return app


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # One line, exit 2 (no usage block).
    self.exit(2, f"cloudfill serve: {message} (see cloudfill serve --help)\n")


def build_parser() -> argparse.ArgumentParser:
  p = _Parser(prog="cloudfill serve",
                              description="Draw masks and restore images in the browser; online inference.")
  p.add_argument("--model", default=None, help="SavedModel directory; default: the packaged model.")
  p.add_argument("--config", default=None, help="YAML profile (e.g. landsat8_l1): value range, bands, masks.")
  p.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
  p.add_argument("--port", type=int, default=8080)
  p.add_argument("--root", default=None, help="Folder whose images the page may open by path.")
  p.add_argument("--max-pixels", type=int, default=64 * 1024 * 1024,
                 help="Refuse images with more pixels, from their header (default 64 Mpx).")
  p.add_argument("--max-upload-mb", type=float, default=1024.0, help="Largest request body (MiB).")
  p.add_argument("--max-batch", type=int, default=16, help="Most windows per model call.")
  p.add_argument("--max-concurrent", type=int, default=8,
                 help="Requests decoded and restored at once; others wait (bounds memory; default 8).")
  p.add_argument("--batch-wait-ms", type=float, default=5.0,
                 help="How long a window waits for others to share a model call.")
  p.add_argument("--exact", action="store_true",
                 help="Never put windows of different requests into one model call: every answer is "
                      "byte-identical to the tile restored alone (a model's float sums can depend on its batch).")
  p.add_argument("--cors-origin", action="append", default=[],
                 help="Allow cross-origin requests from this origin (repeatable; none by default).")
  return p


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``cloudfill serve``; returns 2 on bad usage or a model that cannot serve."""
  args = build_parser().parse_args(argv)
  try:
    spec = ServeSpec(host=args.host, port=args.port, root=args.root, max_pixels=args.max_pixels,
                     max_upload_bytes=int(args.max_upload_mb * (1 << 20)), max_batch=args.max_batch,
                     max_concurrent=args.max_concurrent,
                     batch_wait_ms=args.batch_wait_ms, cors_origins=tuple(args.cors_origin),
                     share_batches=not args.exact)
    svc = load_service(spec, args.model, args.config)
  except (FileNotFoundError, ValueError) as e:
    print(f"cloudfill serve: {e}", file=sys.stderr)
    return 2
  import uvicorn  # pylint: disable=import-outside-toplevel
  if args.host not in LOOPBACK:
    print(f"cloudfill serve: listening on {args.host}: anyone who can reach this address can use it",
          file=sys.stderr)
  # Multipart spooling and any other temporary file stay in our folder, removed on exit.
  tempfile.tempdir = svc.temp
  print(f"cloudfill serve: model {svc.card.name} {svc.card.version}; open http://{args.host}:{args.port}/",
        file=sys.stderr)
  try:
    uvicorn.run(create_app(svc), host=args.host, port=args.port, log_level="warning")
  finally:
    shutil.rmtree(svc.temp, ignore_errors=True)
  return 0
