"""Reading one multipart request into local files, within the server's limits.

Uploads are written into a folder of their own under the server's temporary
folder (removed when the request ends); files picked with ``path`` fields are
read in place under ``--root``. The file type comes from the bytes, not the
name the client gave.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Any, Optional

from pipeline.serve_io import BadInput, confine

MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"),
         (b"II+\x00", ".tif"), (b"MM\x00+", ".tif"))


def sniff(head: bytes) -> Optional[str]:
  """The extension for these first bytes (PNG, JPEG, TIFF/BigTIFF), or None."""
  for magic, ext in MAGIC:
    if head.startswith(magic):
      return ext
  return None


class BodyLimit:
  """ASGI middleware: refuses request bodies over ``max_bytes`` with 413.

  A declared Content-Length over the limit is answered at once; a body that
  grows past it while being read raises :class:`BadInput` in the handler.
  """

  def __init__(self, app, max_bytes: int):
    self.app, self.max_bytes = app, max_bytes

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    declared = dict(scope.get("headers") or []).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
      from starlette.responses import JSONResponse  # pylint: disable=import-outside-toplevel
      err = BadInput(413, "too_large", f"the request is {int(declared)} bytes; the limit is "
                     f"{self.max_bytes} (--max-upload-mb)")
      return await JSONResponse(err.to_json(), status_code=413)(scope, receive, send)
    seen = 0

    async def limited():
      nonlocal seen
      message = await receive()
      seen += len(message.get("body", b""))
      if seen > self.max_bytes:
        raise BadInput(413, "too_large", f"the request body passed the limit of {self.max_bytes} "
                       "bytes (--max-upload-mb)")
      return message

    return await self.app(scope, limited, send)


@dataclasses.dataclass
class Inputs:
  """One request's files and fields.

  Attributes:
    folder: This request's temporary folder (None when nothing was uploaded).
    image, mask, guide: Local paths, or None when not given.
    source: The image's name for provenance (its path under ``--root``, or the
      client's ``source`` field, or ``upload:NAME``).
    mtime: The image's modification time for provenance (0 for uploads unless
      the client sends ``mtime``).
    fields: The other form fields, as strings.
  """

  folder: Optional[str] = None
  image: Optional[str] = None
  mask: Optional[str] = None
  guide: Optional[str] = None
  source: str = ""
  mtime: float = 0.0
  fields: dict[str, str] = dataclasses.field(default_factory=dict)

  def cleanup(self) -> None:
    if self.folder:
      shutil.rmtree(self.folder, ignore_errors=True)


async def _save(upload, folder: str, name: str) -> str:
  head = await upload.read(16)
  ext = sniff(head)
  if ext is None:
    given = getattr(upload, "filename", None) or name
    raise BadInput(400, "not_an_image",
                   f"{name} ({given}) is not a PNG, JPEG or TIFF file" + (" (it is empty)" if not head else ""))
  path = os.path.join(folder, name + ext)
  with open(path, "wb") as f:
    f.write(head)
    while chunk := await upload.read(1 << 20):
      f.write(chunk)
  return path


async def read_inputs(request, temp_root: str, root: Optional[str], need_image: bool = True) -> Inputs:
  """The request's ``image``/``path``, ``mask``/``mask_path``, ``guide`` and fields.

  Raises:
    BadInput: a malformed body (400), a body over the limit (413), no image,
      a file that is not an image, a path outside ``--root``.
  """
  try:
    form = await request.form(max_files=4, max_fields=32)
  except BadInput:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise BadInput(400, "bad_request", f"the body is not multipart/form-data: {e}") from e
  out = Inputs()
  try:
    uploads: dict[str, Any] = {}
    for key, value in form.multi_items():
      if isinstance(value, str):
        out.fields[key] = value
      elif key in ("image", "mask", "guide"):
        uploads[key] = value
    if uploads:
      out.folder = tempfile.mkdtemp(prefix="req-", dir=temp_root)
    for key, upload in uploads.items():
      setattr(out, key, await _save(upload, out.folder, key))
    if out.image is None and out.fields.get("path"):
      out.image = confine(root, out.fields["path"])
      out.source = out.image
      out.mtime = os.path.getmtime(out.image)
    elif out.image is not None:
      out.source = out.fields.get("source") or "upload:" + os.path.basename(
          getattr(uploads["image"], "filename", None) or "image")
      try:
        out.mtime = float(out.fields.get("mtime") or 0.0)
      except ValueError as e:
        raise BadInput(400, "bad_field", f"mtime {out.fields['mtime']!r} is not a number") from e
    if out.mask is None and out.fields.get("mask_path"):
      out.mask = confine(root, out.fields["mask_path"])
    if need_image and out.image is None:
      raise BadInput(400, "no_image", "send an image file in the 'image' field (or 'path' under --root)")
    return out
  except BaseException:
    out.cleanup()
    raise
  finally:
    await form.close()
