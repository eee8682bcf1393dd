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
import logging
import os
import shutil
import sys
import tempfile
import threading
from typing import Optional, Sequence

from model_loader import locate, native
from pipeline.options import DEFAULTS, load_config
from pipeline.serve_batcher import MicroBatcher
from pipeline.serve_io import BadInput, list_root
from pipeline.serve_request import BodyLimit, Inputs, read_inputs
from pipeline.serve_work import (ServeSpec, Service, display_inputs, mask_inputs, preview_inputs, restore_inputs)
from transforms.decode import DecodeSpec
from transforms.engine import EngineSpec
from transforms.masks import MaskSpec
from transforms.tiling import WindowSpec

__all__ = ["ServeSpec", "Service", "build_parser", "create_app", "load_service", "main"]

LOG = logging.getLogger("cloudfill.serve")
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
MEDIA = {
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gtiff": "image/tiff",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg"
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def load_service(spec: ServeSpec, model_uri: Optional[str], config: Optional[str]) -> Service:
  """Loads the model once, checks it on one window, starts the batcher.

  Raises:
    FileNotFoundError, ValueError: a bad model or profile.
  """
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
  decode = DecodeSpec(mask=MaskSpec(source=source,
                                    threshold=settings["mask_threshold"],
                                    dilate=settings["dilate"] or 0,
                                    nodata=settings["nodata"]),
                      bands=tuple(settings["bands"] or ()),
                      model_bands=card.bands,
                      nan_as_missing=bool(settings["nan_as_missing"]),
                      max_pixels=spec.max_pixels,
                      scene_pixels=0,
                      extra_bands=settings.get("extra_bands") or "guided")
  temp = tempfile.mkdtemp(prefix="cloudfill-serve-")
  return Service(spec=spec,
                 card=card,
                 predict=MicroBatcher(model, spec.max_batch, spec.batch_wait_ms / 1000, share=spec.share_batches),
                 engine=EngineSpec(WindowSpec(size=card.window, overlap=card.overlap, value_range=vrange),
                                   batch_size=spec.max_batch,
                                   takes_context=card.takes_context),
                 decode=decode,
                 temp=temp)


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
      return dataclasses.replace(svc,
                                 decode=dataclasses.replace(svc.decode,
                                                            mask=dataclasses.replace(svc.decode.mask, source="nodata")))
    if inputs.mask is not None and svc.decode.mask.source != "file":
      return dataclasses.replace(svc,
                                 decode=dataclasses.replace(svc.decode,
                                                            mask=dataclasses.replace(svc.decode.mask, source="file")))
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
        return JSONResponse({
            "error": "internal",
            "reason": "the server failed on this request; "
                      "see its log"
        },
                            status_code=500)
      finally:
        if inputs is not None:
          inputs.cleanup()

    return endpoint

  def restore(s, inputs):
    data, name, headers = restore_inputs(s, inputs)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(data,
                    media_type=MEDIA.get(os.path.splitext(name)[1].lower(), "application/octet-stream"),
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
    return JSONResponse({
        "status": "ok",
        "model": {
            "name": svc.card.name,
            "version": svc.card.version,
            "bands": svc.card.bands,
            "window": svc.card.window
        },
        "root": bool(svc.spec.root),
        "max_pixels": svc.spec.max_pixels,
        "batches": dataclasses.asdict(stats) if stats else None
    })

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
      Route("/", page),
      Route("/serve.js", script),
      Route("/healthz", healthz),
      Route("/v1/files", files),
      Route("/v1/restore", handler(restore), methods=["POST"]),
      Route("/v1/preview", handler(preview), methods=["POST"]),
      Route("/v1/display", handler(display), methods=["POST"]),
      Route("/v1/mask", handler(mask, need_image=False), methods=["POST"])
  ],
                  lifespan=lifespan)
  if svc.spec.cors_origins:
    from starlette.middleware.cors import CORSMiddleware
    app.add_middleware(CORSMiddleware, allow_origins=list(svc.spec.cors_origins), allow_methods=["GET", "POST"])
  app.add_middleware(BodyLimit, max_bytes=svc.spec.max_upload_bytes)
  return app


class _Parser(argparse.ArgumentParser):

  def error(self, message):  # One line, exit 2 (no usage block).
    self.exit(2, f"cloudfill serve: {message} (see cloudfill serve --help)\n")


def build_parser() -> argparse.ArgumentParser:
  p = _Parser(prog="cloudfill serve", description="Draw masks and restore images in the browser; online inference.")
  p.add_argument("--model", default=None, help="SavedModel directory; default: the packaged model.")
  p.add_argument("--config", default=None, help="YAML profile (e.g. landsat8_l1): value range, bands, masks.")
  p.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
  p.add_argument("--port", type=int, default=8080)
  p.add_argument("--root", default=None, help="Folder whose images the page may open by path.")
  p.add_argument("--max-pixels",
                 type=int,
                 default=64 * 1024 * 1024,
                 help="Refuse images with more pixels, from their header (default 64 Mpx).")
  p.add_argument("--max-upload-mb", type=float, default=1024.0, help="Largest request body (MiB).")
  p.add_argument("--max-batch", type=int, default=16, help="Most windows per model call.")
  p.add_argument("--max-concurrent",
                 type=int,
                 default=8,
                 help="Requests decoded and restored at once; others wait (bounds memory; default 8).")
  p.add_argument("--batch-wait-ms",
                 type=float,
                 default=5.0,
                 help="How long a window waits for others to share a model call.")
  p.add_argument("--exact",
                 action="store_true",
                 help="Never put windows of different requests into one model call: every answer is "
                 "byte-identical to the tile restored alone (a model's float sums can depend on its batch).")
  p.add_argument("--cors-origin",
                 action="append",
                 default=[],
                 help="Allow cross-origin requests from this origin (repeatable; none by default).")
  return p


# What ``pip install -e '.[serve]'`` adds: (import name, package).
SERVE_EXTRA = (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("multipart", "python-multipart"))


def missing_serve_packages() -> list[str]:
  """The serve extra's packages that cannot be imported."""
  missing = []
  for module, pkg in SERVE_EXTRA:
    try:
      __import__(module)  # Third-party modules only (tests/test_structure.py watches project ones).
    except ImportError:
      missing.append(pkg)
  return missing


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``cloudfill serve``; returns 2 on bad usage, a missing serve extra or a model that cannot serve."""
  args = build_parser().parse_args(argv)
  missing = missing_serve_packages()
  if missing:  # Before the model loads (seconds), and before any temporary folder exists.
    print(
        f"cloudfill serve: needs the serve extra ({', '.join(missing)} not installed): "
        f"{os.path.join(os.path.dirname(sys.executable), 'pip')} install -e '.[serve]'",
        file=sys.stderr)
    return 2
  try:
    spec = ServeSpec(host=args.host,
                     port=args.port,
                     root=args.root,
                     max_pixels=args.max_pixels,
                     max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                     max_batch=args.max_batch,
                     max_concurrent=args.max_concurrent,
                     batch_wait_ms=args.batch_wait_ms,
                     cors_origins=tuple(args.cors_origin),
                     share_batches=not args.exact)
    svc = load_service(spec, args.model, args.config)
  except (FileNotFoundError, ValueError) as e:
    print(f"cloudfill serve: {e}", file=sys.stderr)
    return 2
  import uvicorn  # pylint: disable=import-outside-toplevel
  if args.host not in LOOPBACK:
    print(f"cloudfill serve: listening on {args.host}: anyone who can reach this address can use it", file=sys.stderr)
  # Multipart spooling and any other temporary file stay in our folder, removed on exit.
  tempfile.tempdir = svc.temp
  print(f"cloudfill serve: model {svc.card.name} {svc.card.version}; open http://{args.host}:{args.port}/",
        file=sys.stderr)
  try:
    uvicorn.run(create_app(svc), host=args.host, port=args.port, log_level="warning")
  finally:
    shutil.rmtree(svc.temp, ignore_errors=True)
  return 0
