"""The ``cloudfill run`` command line: our flags, then Beam's.

Flags not known here must be Beam pipeline options (``--runner``,
``--project``, ``--direct_running_mode`` …): anything else is a usage error
with a suggestion (:mod:`pipeline.usage`). A ``--config`` YAML profile (see
``configs/``) sets defaults, typed and checked like the flags; flags given on
the command line win over it. Every problem raises :class:`UsageError`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional, Sequence

import yaml

import configs
from pipeline.flag_types import (_bands, _bits, _count, _creation_option, _date, _distance, _finite, _int_list, _nodata,
                                 _positive, _pixels_text, _range, _since)
from pipeline.usage import OneLineParser, UsageError, check_beam_args
from transforms import bands as bands_lib
from transforms.decode import DecodeSpec
from transforms.guide import GuideSpec
from transforms.infer import BACKENDS, InferSpec
from transforms.masks import MaskSpec

CONFIG_DIR = os.path.dirname(os.path.abspath(configs.__file__))

# The defaults of the flags that have one: each is its spec's own default (one
# home per value); a --config profile goes over them and the command line
# over both.
DEFAULTS: dict[str, Any] = {
    "mask_threshold": None,
    "dilate": MaskSpec.dilate,
    "nodata": None,
    "nan_as_missing": DecodeSpec.nan_as_missing,
    "bands": None,
    "value_range": None,
    "backend": InferSpec.backend,
    "min_batch_size": InferSpec.min_batch_size,
    "max_batch_size": InferSpec.max_batch_size,
    "max_batch_duration_secs": InferSpec.max_batch_duration_secs,
    "large_model": InferSpec.large_model,
    "model_copies": InferSpec.model_copies,
    "accelerator": InferSpec.accelerator,
    "overwrite": False,
    "evaluate": False,
    "reference": None,
    "no_report": False,
    "mask_source": None,
    "scene_pixels": DecodeSpec.scene_pixels,
    "max_pixels": DecodeSpec.max_pixels,
    "mask_bits": None,
    "mask_values": None,
    "cog": False,
    "co": None,
    "nodata_border": False,
    "max_fill_distance": None,
    "guide": None,
    "guide_masks": None,
    "guide_resampling": GuideSpec.resampling,
    "no_preview": False,
    "neighbour_margin": None,
    "extra_bands": bands_lib.DEFAULT_METHOD,
}


def build_parser() -> argparse.ArgumentParser:
  p = OneLineParser(prog="cloudfill run",
                    description="Restore cloud gaps in satellite tiles. Other flags must be Beam pipeline "
                    "options (--runner, --project, …); anything else is refused.")
  p.add_argument("--version", action="store_true", help="Print cloudfill's version and exit.")
  io = p.add_argument_group("inputs and outputs")
  io.add_argument("--images",
                  required=True,
                  help="Glob of images on any Beam filesystem (local, gs://, s3://); "
                  "{date} is replaced by --date.")
  io.add_argument("--masks",
                  default=None,
                  help="Mask template with {stem}, {dir} and {date}, e.g. gs://b/masks/{stem}.png. "
                  "Non-zero = missing. Omit to take masks from the image (--mask-source).")
  io.add_argument("--output", required=True, help="Output folder (local, gs://, s3://).")
  io.add_argument("--model", default=None, help="SavedModel directory; default: the model shipped in the package.")
  io.add_argument("--config", default=None, help="YAML profile: a path, or a name in configs/ (e.g. landsat8_l1).")
  io.add_argument("--date", type=_date, default=None, help="Fills {date} in --images and --masks.")
  io.add_argument("--since",
                  type=_since,
                  default=None,
                  help="Only inputs modified at or after this time (ISO 8601 or epoch seconds).")
  m = p.add_argument_group("masks")
  m.add_argument("--mask-source",
                 default=None,
                 help="file (default with --masks), nodata (the image's no-data value), "
                 "or band:K (band K of the image is a cloud probability).")
  m.add_argument("--mask-threshold",
                 type=_finite,
                 default=None,
                 help="Mask/probability values above this are missing (default: any non-zero).")
  m.add_argument("--mask-bits",
                 type=_bits,
                 default=None,
                 help="Integer QA mask: pixels with any of these bits set are missing, e.g. 1,3,4 "
                 "(Landsat Collection 2 QA_PIXEL dilated cloud, cloud, cloud shadow).")
  m.add_argument("--mask-values",
                 type=_int_list,
                 default=None,
                 help="Class mask: pixels with one of these values are missing, e.g. 3,8,9,10 "
                 "(Sentinel-2 SCL cloud shadow, cloud medium/high probability, cirrus).")
  m.add_argument("--dilate", type=_count, default=None, help="Grow masks by N pixels.")
  m.add_argument("--nodata",
                 type=_nodata,
                 default=None,
                 help="No-data value when the image declares none: with --mask-source nodata the gaps "
                 "to fill; otherwise (file or band masks) pixels equal to it in every band lie outside "
                 "the footprint: never read as known, never filled, written back unchanged.")
  m.add_argument("--nan-as-missing",
                 action="store_true",
                 default=None,
                 help="Treat NaN pixels of float input as missing instead of failing the tile.")
  m.add_argument("--scene-pixels",
                 type=_count,
                 default=None,
                 help="GeoTIFFs with more pixels than this are streamed by rows as large scenes "
                 f"(default {_pixels_text(DEFAULTS['scene_pixels'])}).")
  m.add_argument("--max-pixels",
                 type=int,
                 default=None,
                 help="Refuse images and masks whose header says more pixels than this, before "
                 f"decoding (default {_pixels_text(DEFAULTS['max_pixels'])}).")
  m.add_argument("--nodata-border",
                 action="store_true",
                 default=None,
                 help="Only no-data pixels connected to the image border are outside the footprint "
                 "(the zero fill around L1 scenes; dark ground equal to the value stays known).")
  m.add_argument("--max-fill-distance",
                 type=_distance,
                 default=None,
                 metavar="PX",
                 help="Hole pixels farther than PX pixels from known ground are not filled: they are "
                 "written as the no-data value (or left as they were without one) and counted "
                 "as 'unfilled' (GDAL FillNodata's -md). Default: fill everything.")
  m.add_argument("--neighbour-margin",
                 type=_count,
                 default=None,
                 metavar="PX",
                 help="Tiles of one grid (a pre-cut archive: same CRS, adjacent transforms) draw their "
                 "context from PX pixels of their neighbours too, so fills do not break at tile "
                 "borders (default: twice the model's window; 0 = off).")
  g = p.add_argument_group("guide (another date of the same place)")
  g.add_argument("--guide",
                 action="append",
                 default=None,
                 metavar="TEMPLATE",
                 help="Each image's guide, with {stem}, {dir}, {date} as in --masks; repeat in order of "
                 "preference (the first that exists is used). Other grids are warped onto the image's.")
  g.add_argument("--guide-masks",
                 default=None,
                 metavar="TEMPLATE",
                 help="The guide's own cloud masks ({stem}, {dir} of the guide; non-zero = cloud). "
                 "Default: the guide's no-data only.")
  g.add_argument("--guide-resampling",
                 choices=("bilinear", "nearest"),
                 default=None,
                 help=f"Resampling of guides on another grid (default {DEFAULTS['guide_resampling']}).")
  b = p.add_argument_group("bands and values")
  b.add_argument("--bands", type=_bands, default=None, help="1-based bands to restore, e.g. 4,3,2.")
  b.add_argument("--extra-bands",
                 choices=bands_lib.METHODS,
                 default=None,
                 help="How the holes of the bands the model does not restore are filled (every band "
                 "comes out): guided = regressed on the restored model bands by a local linear fit "
                 "plus its residual (default); model = through the model in groups of its band count.")
  b.add_argument("--value-range",
                 type=_range,
                 default=None,
                 help="LO,HI mapped to the model's 0…1 (default: the dtype's range).")
  i = p.add_argument_group("inference")
  i.add_argument("--backend",
                 choices=BACKENDS,
                 default=None,
                 help="native: tf.saved_model.load on numpy batches (default); "
                 "tfx: tfx-bsl on serialized tf.train.Example; "
                 "tflite: the model's dynamic-range TFLite file (assets/cloudfill_dynamic.tflite).")
  i.add_argument("--min-batch-size", type=_positive, default=None)
  i.add_argument("--max-batch-size", type=_positive, default=None)
  i.add_argument("--max-batch-duration-secs", type=_count, default=None)
  i.add_argument("--large-model",
                 action="store_true",
                 default=None,
                 help="Share one model across the processes of a worker.")
  i.add_argument("--model-copies",
                 type=_positive,
                 default=None,
                 help="Exact number of model copies per worker (e.g. one per GPU).")
  i.add_argument("--accelerator",
                 default=None,
                 help="Resource hint for the inference step, e.g. "
                 "'type:nvidia-l4;count:1;install-nvidia-driver'.")
  o = p.add_argument_group("run")
  o.add_argument("--overwrite",
                 action="store_true",
                 default=None,
                 help="Restore every tile, even when its output is up to date.")
  o.add_argument("--evaluate",
                 action="store_true",
                 default=None,
                 help="Score restored pixels against the input's own pixels under the mask "
                 "(clear tiles with artificial masks).")
  o.add_argument("--reference",
                 default=None,
                 help="Template of a clear acquisition per tile ({stem}, {dir}) to score against.")
  o.add_argument("--no-report", action="store_true", default=None, help="Do not write the HTML report after the run.")
  o.add_argument("--dry-run",
                 action="store_true",
                 default=False,
                 help="List what would be restored, skipped or refused, and write nothing "
                 "(local inputs and output).")
  o.add_argument("-q", "--quiet", action="store_true", default=False, help="Print only errors and the final counts.")
  o.add_argument("-v",
                 "--verbose",
                 action="count",
                 default=0,
                 help="More logging (-v: Beam and cloudfill INFO; -vv: also TensorFlow's start-up).")
  w = p.add_argument_group("GeoTIFF output")
  w.add_argument("--cog",
                 action="store_true",
                 default=None,
                 help="Write restored GeoTIFFs as Cloud-Optimized GeoTIFFs (GDAL's COG driver: "
                 "tiled, internal overviews, LAYOUT=COG).")
  w.add_argument("--co",
                 action="append",
                 type=_creation_option,
                 default=None,
                 metavar="NAME=VALUE",
                 help="GDAL creation option, repeatable (e.g. --co COMPRESS=ZSTD --co PREDICTOR=2). "
                 "Without it the input's compression and overviews are kept.")
  o.add_argument("--no-preview",
                 action="store_true",
                 default=None,
                 help="Do not write the low-resolution quicklooks DIR/preview/{stem}.png.")
  return p


# How a config value is checked and converted: the flag's own converter.
_CONFIG_TYPES: dict[str, Any] = {
    "mask_threshold": _finite,
    "dilate": _count,
    "nodata": _nodata,
    "bands": _bands,
    "value_range": _range,
    "min_batch_size": _positive,
    "max_batch_size": _positive,
    "max_batch_duration_secs": _count,
    "model_copies": _positive,
    "scene_pixels": _count,
    "mask_bits": _bits,
    "mask_values": _int_list,
    "co": _creation_option,
    "max_pixels": _count,
    "max_fill_distance": _distance,
    "neighbour_margin": _count,
}
_CONFIG_BOOLS = ("nan_as_missing", "large_model", "overwrite", "evaluate", "no_report", "cog", "nodata_border",
                 "no_preview")
_CONFIG_STRINGS = ("backend", "accelerator", "reference", "mask_source", "masks", "model", "guide_masks",
                   "guide_resampling", "extra_bands")
EXPECT_KEYS = ("dtypes", "bands", "band_names", "value_ranges")


def _config_value(path: str, key: str, value: Any) -> Any:
  """One ``run:`` value of a profile, checked as its flag would be."""
  where = f"config {path}: {key}"
  if key == "guide":  # One template or a list of them, in order of preference.
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
      raise UsageError(f"{where} must be a template or a list of templates, got {value!r}")
    return list(items)
  if key == "guide_resampling" and value not in ("bilinear", "nearest"):
    raise UsageError(f"{where} must be bilinear or nearest, got {value!r}")
  if key == "extra_bands" and value not in bands_lib.METHODS:
    raise UsageError(f"{where} must be guided or model, got {value!r}")
  if key in _CONFIG_BOOLS:
    if not isinstance(value, bool):
      raise UsageError(f"{where} must be true or false, got {value!r}")
    return value
  if key in _CONFIG_STRINGS:
    if not isinstance(value, str):
      raise UsageError(f"{where} must be a string, got {value!r}")
    if key == "backend" and value not in BACKENDS:
      raise UsageError(f"{where} must be one of {', '.join(BACKENDS)}, got {value!r}")
    return value
  convert = _CONFIG_TYPES[key]
  if isinstance(value, bool) or (isinstance(value, dict) and key != "co"):
    raise UsageError(f"{where} has the wrong type: {value!r}")
  try:
    if key == "co":  # [NAME=VALUE, ...] or {NAME: VALUE}
      items = [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else value
      return [convert(str(i)) for i in ([items] if isinstance(items, str) else items)]
    if isinstance(value, list):
      value = ",".join(str(v) for v in value)
    return convert(str(value))
  except (argparse.ArgumentTypeError, TypeError, AttributeError) as e:
    raise UsageError(f"{where}: {e}") from e


def _expectations(path: str, data: Any) -> dict[str, Any]:
  """The profile's ``expect:`` section: what its inputs look like."""
  if data is None:
    return {}
  if not isinstance(data, dict) or set(data) - set(EXPECT_KEYS):
    raise UsageError(f"config {path}: expect: takes {', '.join(EXPECT_KEYS)}")
  out: dict[str, Any] = {}
  if "dtypes" in data:
    if not isinstance(data["dtypes"], list) or not all(isinstance(d, str) for d in data["dtypes"]):
      raise UsageError(f"config {path}: expect.dtypes must be a list of dtype names")
    out["dtypes"] = tuple(data["dtypes"])
  if "bands" in data:
    if isinstance(data["bands"], bool) or not isinstance(data["bands"], int) or data["bands"] < 1:
      raise UsageError(f"config {path}: expect.bands must be a band count")
    out["bands"] = data["bands"]
  if "band_names" in data:
    out["band_names"] = tuple(str(b) for b in data["band_names"])
  if "value_ranges" in data:
    ranges = data["value_ranges"]
    if not isinstance(ranges, dict):
      raise UsageError(f"config {path}: expect.value_ranges maps a dtype to [LO, HI]")
    try:
      out["value_ranges"] = {str(k): _range(",".join(str(x) for x in v)) for k, v in ranges.items()}
    except (argparse.ArgumentTypeError, TypeError) as e:
      raise UsageError(f"config {path}: expect.value_ranges: {e}") from e
  return out


def profile_names() -> list[str]:
  return sorted(n[:-5] for n in os.listdir(CONFIG_DIR) if n.endswith(".yaml"))


def _config_path(name_or_path: str) -> str:
  if os.path.exists(name_or_path):
    if not os.path.isfile(name_or_path):
      raise UsageError(f"config {name_or_path!r} is not a file")
    return name_or_path
  candidate = os.path.join(CONFIG_DIR, name_or_path + ("" if name_or_path.endswith(".yaml") else ".yaml"))
  if os.sep in name_or_path or not os.path.isfile(candidate):
    raise UsageError(f"config {name_or_path!r} not found: neither a file nor a profile "
                     f"({', '.join(profile_names())})")
  return candidate


def read_config(name_or_path: Optional[str]) -> tuple[dict[str, Any], dict[str, Any]]:
  """A YAML profile's ``run:`` settings (flag names with ``-`` or ``_``) and ``expect:``.

  Raises:
    UsageError: missing, unreadable, not YAML, unknown keys, wrong types.
  """
  if not name_or_path:
    return {}, {}
  path = _config_path(name_or_path)
  try:
    with open(path, encoding="utf-8") as f:
      data = yaml.safe_load(f) or {}
  except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
    raise UsageError(f"config {path}: cannot be read as YAML: {str(e).splitlines()[0]}") from e
  if not isinstance(data, dict) or set(data) - {"run", "expect"}:
    raise UsageError(f"config {path}: expected a mapping with run: (and expect:)")
  run = data.get("run") or {}
  if not isinstance(run, dict):
    raise UsageError(f"config {path}: run: must be a mapping of flag names to values")
  settings = {str(k).replace("-", "_"): v for k, v in run.items()}
  unknown = set(settings) - set(DEFAULTS) - {"masks", "model"}
  if unknown:
    raise UsageError(f"config {path}: unknown keys {sorted(unknown)}")
  settings = {k: (None if v is None else _config_value(path, k, v)) for k, v in settings.items()}
  return settings, _expectations(path, data.get("expect"))


def load_config(name_or_path: Optional[str]) -> dict[str, Any]:
  """A YAML profile's ``run:`` settings (see :func:`read_config`)."""
  return read_config(name_or_path)[0]


def parse(argv: Optional[Sequence[str]]) -> tuple[argparse.Namespace, list[str]]:
  """Parses our flags (config defaults under command-line values) and Beam's."""
  parser = build_parser()
  args, beam_args = parser.parse_known_args(argv)
  check_beam_args(beam_args, [s for s in parser._option_string_actions if s.startswith("--")])  # pylint: disable=protected-access
  config, args.expect = read_config(args.config)
  for key, default in DEFAULTS.items():
    if getattr(args, key) is None:
      setattr(args, key, config.get(key, default))
  for key in ("masks", "model"):
    if getattr(args, key) is None and config.get(key):
      setattr(args, key, config[key])
  if args.mask_source is None:
    args.mask_source = "file" if args.masks else "nodata"
  if args.mask_source == "file" and not args.masks:
    raise UsageError("--mask-source file needs --masks TEMPLATE")
  if args.mask_source not in ("file", "nodata"):
    kind, _, k = str(args.mask_source).partition(":")
    if kind != "band" or not k.isdigit() or int(k) < 1:
      raise UsageError(f"--mask-source is file, nodata or band:K; mask source band:K needs a "
                       f"1-based band number K, got {args.mask_source!r}")
  if args.mask_source != "file" and args.masks:
    raise UsageError(f"--masks and --mask-source {args.mask_source} name two sources of one mask: give one")
  if args.mask_bits and args.mask_values:
    raise UsageError("--mask-bits and --mask-values are two ways to read one mask: give one")
  if (args.mask_bits or args.mask_values) and args.mask_source == "nodata":
    raise UsageError("--mask-bits/--mask-values read a mask file (--masks) or a band (--mask-source band:K)")
  if args.cog and args.co and any(c.split("=", 1)[0] in ("TILED", "BLOCKXSIZE", "BLOCKYSIZE") for c in args.co):
    raise UsageError("--cog lays out its own tiles: use --co BLOCKSIZE=N instead of TILED/BLOCKXSIZE")
  if args.date:
    args.images = args.images.replace("{date}", args.date)
    if args.masks:
      args.masks = args.masks.replace("{date}", args.date)
  elif "{date}" in args.images:
    raise UsageError("--images has {date} but no --date was given")
  return args, beam_args
