"""Checks at launch, before any work: every failure is a one-line usage error.

* the output is a writable folder (or can be made one);
* object storage has credentials (checked locally and with short timeouts,
  never by retrying requests for minutes);
* the model card has the right types;
* ``--images`` matches something;
* a few inputs, sampled by their headers and a decimated read, fit the
  profile (dtype, band count) and the value range (:func:`check_sample`).

Nothing here writes a file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems

from model_loader import locate
from pipeline.usage import UsageError
from transforms.raster_io import PIL_EXTS, TIFF_EXTS, decode_raster, gdal_driver, read_bytes, split_ext
from transforms import raster_open
from transforms.match import BACKSLASH_REASON, unreadable_local_matches
from transforms.scaling import DTYPE_RANGES

SAMPLE_INPUTS = 3
SAMPLE_SIDE = 256
# At launch: refuse when more than this share of the sampled known pixels is
# outside the value range (per tile, above 1 % is a warning: transforms.write).
REFUSE_OUTSIDE = 0.05
# ...or when the sample spans less than this share of the value range (e.g.
# reflectance 0…1 under a 0…10000 profile).
REFUSE_SPAN = 0.001


def scheme(uri: Optional[str]) -> Optional[str]:
  if not uri or "://" not in uri:
    return None
  return uri.split("://", 1)[0].lower()


def check_output(output: str) -> None:
  """A local ``--output`` must be a folder we can write into."""
  if scheme(output):
    return
  path = os.path.abspath(output)
  if os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f"--output {output} is a file, not a folder")
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise UsageError(f"--output {output}: {parent} is not writable")


def check_credentials(uris: Sequence[Optional[str]], beam_args: Sequence[str]) -> None:
  """Fails fast when ``gs://`` or ``s3://`` is used without credentials.

  Google Cloud: ``STORAGE_EMULATOR_HOST``, ``GOOGLE_APPLICATION_CREDENTIALS``,
  gcloud's application-default file, or a metadata server answering within
  one second. S3: Beam's ``--s3_access_key_id`` or boto3's credential chain
  (environment, files, instance metadata with its one-second timeout).
  """
  schemes = {scheme(u) for u in uris if u}
  if "gs" in schemes and not _gcs_credentials():
    raise UsageError("gs:// needs Google Cloud credentials and none were found: set "
                     "GOOGLE_APPLICATION_CREDENTIALS or run 'gcloud auth application-default login'")
  if "s3" in schemes and not _s3_credentials(beam_args):
    raise UsageError("s3:// needs AWS credentials and none were found: set AWS_ACCESS_KEY_ID/"
                     "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or pass --s3_access_key_id/--s3_secret_access_key")


def _gcs_credentials() -> bool:
  if os.environ.get("STORAGE_EMULATOR_HOST"):
    return True
  key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
  if key:
    if not os.path.isfile(key):
      raise UsageError(f"GOOGLE_APPLICATION_CREDENTIALS={key} is not a file")
    return True
  config = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "gcloud")
  if os.path.isfile(os.path.join(config, "application_default_credentials.json")):
    return True
  try:  # On Google Cloud the metadata server answers at once.
    # pylint: disable=import-outside-toplevel
    import google.auth.transport.requests
    from google.auth.compute_engine import _metadata
    return bool(_metadata.ping(google.auth.transport.requests.Request(), timeout=1, retry_count=1))
  except Exception:  # pylint: disable=broad-except
    return False


def _s3_credentials(beam_args: Sequence[str]) -> bool:
  if any(a.startswith("--s3_access_key_id") for a in beam_args):
    return True
  os.environ.setdefault("AWS_METADATA_SERVICE_TIMEOUT", "1")
  os.environ.setdefault("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")
  try:
    import boto3  # pylint: disable=import-outside-toplevel
    return boto3.session.Session().get_credentials() is not None
  except Exception:  # pylint: disable=broad-except
    return False


def read_card(model_uri: str):
  """The model card, with its types checked."""
  try:
    card = locate.read_card(model_uri)
  except (FileNotFoundError, ValueError, TypeError, KeyError, UnicodeDecodeError, OSError) as e:
    raise UsageError(f"model {model_uri}: {e}") from e
  check_card(card, model_uri)
  return card


def check_card(card, model_uri: str) -> None:
  """Raises UsageError when a card field has the wrong type or value."""

  def bad(field: str, want: str):
    raise UsageError(f"model {model_uri}: card field {field}={getattr(card, field)!r} must be {want}")

  for name in ("name", "version"):
    if not isinstance(getattr(card, name), str) or not getattr(card, name):
      bad(name, "a non-empty string")
  for name, low in (("bands", 1), ("window", 8), ("overlap", 0), ("pad_multiple", 1)):
    value = getattr(card, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      bad(name, f"an integer >= {low}")
  if not isinstance(card.weights_sha256, str):
    bad("weights_sha256", "a hex string")
  if card.overlap * 2 >= card.window:
    bad("overlap", f"less than half the window ({card.window})")


def match_inputs(pattern: str) -> list[str]:
  """The paths ``--images`` matches (as Beam lists them: what the run reads), sorted.

  A local file Beam cannot list (a backslash in its name) is not among them:
  the run dead-letters it (:func:`transforms.match.unreadable_local_matches`).

  Raises:
    UsageError: nothing matches (the pattern is named), or only such files.
  """
  try:
    found = FileSystems.match([pattern])[0].metadata_list
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f"--images {pattern}: cannot be listed: {str(e).splitlines()[0][:200]}") from e
  paths = sorted(m.path for m in found)
  if not paths:
    unlisted = [d.path for d in unreadable_local_matches(pattern) if d.reason == BACKSLASH_REASON]
    if unlisted:
      raise UsageError(f"--images {pattern} matches only file(s) Beam's filesystem cannot list (a backslash in the "
                       f"name), e.g. {unlisted[0]!r}; rename them")
    raise UsageError(f"--images {pattern} matches no file")
  return paths


@dataclasses.dataclass(frozen=True)
class Header:
  """What a sampled input looks like.

  Attributes:
    path: The input.
    dtype: Its dtype name.
    count: Its band count.
    nodata: Its declared no-data value, or None.
    sample: ``[h, w, C]`` decimated pixels (at most 256 a side), all bands.
    full_shape: ``(H, W)`` of the whole raster.
  """

  path: str
  dtype: str
  count: int
  nodata: Optional[float]
  sample: np.ndarray
  full_shape: tuple[int, ...] = ()


def read_header(path: str, max_pixels: int) -> Header:
  """Header and a decimated read of a local raster (no full decode for GeoTIFFs).

  The same guards as the pipeline's decode (:mod:`transforms.raster_open`):
  a FIFO or directory is refused unopened, a header over ``max_pixels`` is
  refused before any pixel is decoded, a ``.tif`` is read as a TIFF only.

  Raises:
    DecodeError, ValueError: what the run would dead-letter the input for.
  """
  ext = split_ext(path)[1].lower()
  raster_open.check_regular(path)
  if ext in TIFF_EXTS and scheme(path) is None:
    import rasterio  # pylint: disable=import-outside-toplevel
    from rasterio.enums import Resampling  # pylint: disable=import-outside-toplevel
    with rasterio.open(path, driver=gdal_driver(path)) as src:
      raster_open.check_pixels(raster_open.RasterHeader(src.height, src.width, src.count), max_pixels)
      step = max(1, max(src.height, src.width) // SAMPLE_SIDE)
      shape = (src.count, max(1, src.height // step), max(1, src.width // step))
      arr = src.read(out_shape=shape, resampling=Resampling.nearest)
      return Header(path, src.dtypes[0], src.count, src.nodata, np.moveaxis(arr, 0, -1), (src.height, src.width))
  if ext in PIL_EXTS and scheme(path) is None:
    image, profile = raster_open.decode_pil_file(path, ext, max_pixels)  # Header checked first.
  else:
    image, profile = decode_raster(read_bytes(path), ext)
  step = max(1, max(image.shape[:2]) // SAMPLE_SIDE)
  return Header(path, profile["dtype"], image.shape[2], profile.get("nodata"), image[::step, ::step], image.shape[:2])


def sample_paths(paths: Sequence[str], n: int = SAMPLE_INPUTS) -> list[str]:
  """Up to ``n`` local paths spread over the sorted list (first, middle, last)."""
  local = [p for p in paths if scheme(p) is None]
  if len(local) <= n:
    return list(local)
  return [local[round(i * (len(local) - 1) / (n - 1))] for i in range(n)]


def expected_text(expect: dict[str, Any]) -> str:
  parts = []
  if expect.get("dtypes"):
    parts.append(" or ".join(expect["dtypes"]))
  if expect.get("bands"):
    names = expect.get("band_names")
    parts.append(f"{expect['bands']} bands" + (f" ({','.join(names)})" if names else ""))
  return " with ".join(parts)


def check_header(h: Header, args, card, expect: dict[str, Any]) -> Optional[str]:
  """Why input ``h`` does not fit the profile and the model, or None."""
  seen = f"{h.dtype} with {h.count} bands"
  if expect.get("dtypes") and h.dtype not in expect["dtypes"]:
    return f"{h.path} is {seen}; the profile expects {expected_text(expect)}"
  if expect.get("bands") and h.count != expect["bands"]:
    return f"{h.path} is {seen}; the profile expects {expected_text(expect)}"
  usable = h.count - (1 if str(args.mask_source).startswith("band:") else 0)
  if args.bands and max(args.bands) > usable:
    return f"{h.path} has {usable} bands; --bands {','.join(map(str, args.bands))} asks for band {max(args.bands)}"
  if not args.bands and usable < card.bands:
    return f"{h.path} has {usable} bands; the model takes {card.bands}"
  return None


def check_values(h: Header, args, vrange: tuple[float, float], explicit: bool = True) -> Optional[str]:
  """Why the sampled pixels do not fit ``vrange``, or None.

  ``explicit``: the range was given (flag or profile), so pixels that fill
  only its bottom 0.1 % are a wrong scale too (not just pixels outside it).
  """
  bands = [b - 1 for b in args.bands] if args.bands else list(range(min(h.count, h.sample.shape[2])))
  bands = [b for b in bands if b < h.sample.shape[2]]
  values = h.sample[:, :, bands].astype(np.float64)
  known = np.isfinite(values)
  if h.nodata is not None:
    known &= ~np.all((values == h.nodata) | (np.isnan(values) & np.isnan(h.nodata)), axis=2, keepdims=True)
  v = values[known]
  if v.size == 0:
    return None
  lo, hi = vrange
  outside = float(np.mean((v < lo) | (v > hi)))
  p1, p99 = (float(x) for x in np.percentile(v, [1, 99]))
  seen = f"{h.dtype} values {p1:g}…{p99:g} (1st–99th percentile)"
  if outside > REFUSE_OUTSIDE:
    return (f"{h.path}: {outside:.0%} of the sampled pixels fall outside the value range "
            f"{lo:g}…{hi:g}; saw {seen}: set --value-range or pick another --config")
  if explicit and p99 - lo < REFUSE_SPAN * (hi - lo):
    return (f"{h.path}: saw {seen}, which fills under {REFUSE_SPAN:.1%} of the value range "
            f"{lo:g}…{hi:g}: set --value-range or pick another --config")
  return None


def check_sample(paths: Sequence[str], args, card) -> list[Header]:
  """Samples a few inputs and checks them against the profile, the model and the values.

  The run is refused only when every sampled input misfits (the data does
  not fit the profile); a single odd input is the run's to dead-letter.
  A profile's ``expect.value_ranges`` sets ``args.value_range`` from the
  inputs' dtype when no value range was given.

  Raises:
    UsageError: what was seen against what was expected.
  """
  expect = getattr(args, "expect", None) or {}
  headers = []
  for path in sample_paths(paths):
    try:
      headers.append(read_header(path, args.max_pixels))
    except Exception:  # pylint: disable=broad-except
      continue  # An unreadable input is the run's to dead-letter, with its reason.
  if not headers:
    return headers
  _refuse_if_all([check_header(h, args, card, expect) for h in headers])
  if args.value_range is None and expect.get("value_ranges"):
    dtypes = sorted({h.dtype for h in headers})
    fits = [d for d in dtypes if d in expect["value_ranges"]]
    if not fits:
      raise UsageError(f"{headers[0].path} is {dtypes[0]}; the profile has value ranges for "
                       f"{', '.join(expect['value_ranges'])}")
    args.value_range = tuple(expect["value_ranges"][fits[0]])
  reasons = []
  for h in headers:
    if args.value_range is None and h.dtype not in DTYPE_RANGES:
      continue
    vrange = tuple(args.value_range) if args.value_range else DTYPE_RANGES[h.dtype]
    reasons.append(check_values(h, args, vrange, explicit=args.value_range is not None))
  _refuse_if_all(reasons)
  return headers


def _refuse_if_all(reasons: list[Optional[str]]) -> None:
  if reasons and all(reasons):
    raise UsageError(reasons[0])
