"""The ``cloudfill run`` command line: our flags, then Beam's.

Flags not known here are Beam pipeline options (``--runner``, ``--project``,
``--direct_running_mode`` …). A ``--config`` YAML profile (see ``configs/``)
sets defaults; flags given on the command line win over it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import Any, Optional, Sequence

import yaml

import configs

CONFIG_DIR = os.path.dirname(os.path.abspath(configs.__file__))


def _int_list(text: str) -> list[int]:
  try:
    return [int(t) for t in text.split(",") if t.strip()]
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def _range(text: str) -> tuple[float, float]:
  parts = text.split(",")
  if len(parts) != 2:
    raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}")
  return float(parts[0]), float(parts[1])


def _date(text: str) -> str:
  dt.date.fromisoformat(text)
  return text


def _since(text: str) -> float:
  try:
    return float(text)
  except ValueError:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.datetime.fromisoformat(text).tzinfo or dt.timezone.utc).timestamp()


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="cloudfill run",
      description="Restore cloud gaps in satellite tiles. Unknown flags are Beam pipeline options.")
  io = p.add_argument_group("inputs and outputs")
  io.add_argument("--images", required=True,
                  help="Glob of images on any Beam filesystem (local, gs://, s3://); "
                       "{date} is replaced by --date.")
  io.add_argument("--masks", default=None,
                  help="Mask template with {stem} and {dir}, e.g. gs://b/masks/{stem}.png. "
                       "Non-zero = missing. Omit to take masks from the image (--mask-source).")
  io.add_argument("--output", required=True, help="Output folder (local, gs://, s3://).")
  io.add_argument("--model", default=None,
                  help="SavedModel directory; default: the model shipped in the package.")
  io.add_argument("--config", default=None,
                  help="YAML profile: a path, or a name in configs/ (e.g. landsat8_l1).")
  io.add_argument("--date", type=_date, default=None, help="Fills {date} in --images and --masks.")
  io.add_argument("--since", type=_since, default=None,
                  help="Only inputs modified at or after this time (ISO 8601 or epoch seconds).")
  m = p.add_argument_group("masks")
  m.add_argument("--mask-source", default=None,
                 help="file (default with --masks), nodata (the image's no-data value), "
                      "or band:K (band K of the image is a cloud probability).")
  m.add_argument("--mask-threshold", type=float, default=None,
                 help="Mask/probability values above this are missing (default: any non-zero).")
  m.add_argument("--dilate", type=int, default=None, help="Grow masks by N pixels.")
  m.add_argument("--nodata", type=float, default=None,
                 help="No-data value when the image declares none: with --mask-source nodata the gaps "
                      "to fill; otherwise (file or band masks) pixels equal to it in every band lie outside "
                      "the footprint: never read as known, never filled, written back unchanged.")
  m.add_argument("--nan-as-missing", action="store_true", default=None,
                 help="Treat NaN pixels of float input as missing instead of failing the tile.")
  m.add_argument("--scene-pixels", type=int, default=None,
                 help="GeoTIFFs with more pixels than this are streamed by rows as large scenes "
                      "(default 4194304 = 2048x2048).")
  m.add_argument("--nodata-border", action="store_true", default=None,
                 help="Only no-data pixels connected to the image border are outside the footprint "
                      "(the zero fill around L1 scenes; dark ground equal to the value stays known).")
  m.add_argument("--max-fill-distance", type=float, default=None, metavar="PX",
                 help="Hole pixels farther than PX pixels from known ground are not filled: they are "
                      "written as the no-data value (or left as they were without one) and counted "
                      "as 'unfilled' (GDAL FillNodata's -md). Default: fill everything.")
  m.add_argument("--neighbour-margin", type=int, default=None, metavar="PX",
                 help="Tiles of one grid (a pre-cut archive: same CRS, adjacent transforms) draw their "
                      "context from PX pixels of their neighbours too, so fills do not break at tile "
                      "borders (default: twice the model's window; 0 = off).")
  g = p.add_argument_group("guide (another date of the same place)")
  g.add_argument("--guide", action="append", default=None, metavar="TEMPLATE",
                 help="Each image's guide, with {stem}, {dir}, {date} as in --masks; repeat in order of "
                      "preference (the first that exists is used). Other grids are warped onto the image's.")
  g.add_argument("--guide-masks", default=None, metavar="TEMPLATE",
                 help="The guide's own cloud masks ({stem}, {dir} of the guide; non-zero = cloud). "
                      "Default: the guide's no-data only.")
  g.add_argument("--guide-resampling", choices=("bilinear", "nearest"), default=None,
                 help="Resampling of guides on another grid (default bilinear).")
  b = p.add_argument_group("bands and values")
  b.add_argument("--bands", type=_int_list, default=None, help="1-based bands to restore, e.g. 4,3,2.")
  b.add_argument("--value-range", type=_range, default=None,
                 help="LO,HI mapped to the model's 0…1 (default: the dtype's range).")
  i = p.add_argument_group("inference")
  i.add_argument("--backend", choices=("native", "tfx"), default=None,
                 help="native: tf.saved_model.load on numpy batches (default); "
                      "tfx: tfx-bsl on serialized tf.train.Example.")
  i.add_argument("--min-batch-size", type=int, default=None)
  i.add_argument("--max-batch-size", type=int, default=None)
  i.add_argument("--max-batch-duration-secs", type=int, default=None)
  i.add_argument("--large-model", action="store_true", default=None,
                 help="Share one model across the processes of a worker.")
  i.add_argument("--model-copies", type=int, default=None,
                 help="Exact number of model copies per worker (e.g. one per GPU).")
  i.add_argument("--accelerator", default=None,
                 help="Resource hint for the inference step, e.g. "
                      "'type:nvidia-l4;count:1;install-nvidia-driver'.")
  o = p.add_argument_group("run")
  o.add_argument("--overwrite", action="store_true", default=None,
                 help="Restore every tile, even when its output is up to date.")
  o.add_argument("--evaluate", action="store_true", default=None,
                 help="Score restored pixels against the input's own pixels under the mask "
                      "(clear tiles with artificial masks).")
  o.add_argument("--reference", default=None,
                 help="Template of a clear acquisition per tile ({stem}, {dir}) to score against.")
  o.add_argument("--no-report", action="store_true", default=None,
                 help="Do not write the HTML report after the run.")
  o.add_argument("--no-preview", action="store_true", default=None,
                 help="Do not write the low-resolution quicklooks DIR/preview/{stem}.png.")
  return p


DEFAULTS: dict[str, Any] = {
    "mask_threshold": None, "dilate": 0, "nodata": None, "nan_as_missing": False,
    "bands": None, "value_range": None, "backend": "native", "min_batch_size": None,
    "max_batch_size": 16, "max_batch_duration_secs": None, "large_model": False,
    "model_copies": None, "accelerator": None, "overwrite": False, "evaluate": False,
    "reference": None, "no_report": False, "mask_source": None, "scene_pixels": 2048 * 2048,
    "nodata_border": False, "max_fill_distance": None, "guide": None, "guide_masks": None,
    "guide_resampling": "bilinear", "no_preview": False, "neighbour_margin": None,
}


def load_config(name_or_path: Optional[str]) -> dict[str, Any]:
  """Reads a YAML profile; keys are flag names with ``-`` or ``_``."""
  if not name_or_path:
    return {}
  path = name_or_path
  if not os.path.exists(path):
    candidate = os.path.join(CONFIG_DIR, name_or_path + ("" if name_or_path.endswith(".yaml") else ".yaml"))
    if not os.path.exists(candidate):
      raise FileNotFoundError(f"config {name_or_path!r} not found (looked in {CONFIG_DIR})")
    path = candidate
  with open(path, encoding="utf-8") as f:
    data = yaml.safe_load(f) or {}
  settings = {k.replace("-", "_"): v for k, v in (data.get("run") or {}).items()}
  unknown = set(settings) - set(DEFAULTS) - {"masks", "model"}
  if unknown:
    raise ValueError(f"config {path}: unknown keys {sorted(unknown)}")
  if isinstance(settings.get("guide"), str):
    settings["guide"] = [settings["guide"]]
  if settings.get("value_range") is not None:
    settings["value_range"] = tuple(float(v) for v in settings["value_range"])
  return settings


def parse(argv: Optional[Sequence[str]]) -> tuple[argparse.Namespace, list[str]]:
  """Parses our flags (config defaults under command-line values) and Beam's."""
  args, beam_args = build_parser().parse_known_args(argv)
  config = load_config(args.config)
  for key, default in DEFAULTS.items():
    if getattr(args, key) is None:
      setattr(args, key, config.get(key, default))
  for key in ("masks", "model"):
    if getattr(args, key) is None and config.get(key):
      setattr(args, key, config[key])
  if args.mask_source is None:
    args.mask_source = "file" if args.masks else "nodata"
  if args.mask_source == "file" and not args.masks:
    raise SystemExit("cloudfill run: --mask-source file needs --masks TEMPLATE")
  if args.date:
    args.images = args.images.replace("{date}", args.date)
    if args.masks:
      args.masks = args.masks.replace("{date}", args.date)
  elif "{date}" in args.images:
    raise SystemExit("cloudfill run: --images has {date} but no --date was given")
  return args, beam_args
