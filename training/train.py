"""``cloudfill train``: train the generator under the JAX backend.

One command for a CPU here and a GPU machine there (JAX uses whatever it
finds; on a GPU, bf16 mixed precision and XLA-compiled steps). Data: a
folder of rasters (read with rasterio) or a bundle from
:mod:`training.bundle` (numpy only: for machines without GDAL).

Example::

  KERAS_BACKEND=jax python -m training.train --data ../shared/data \\
      --out runs/cpu --minutes 120

Writes into ``--out``: ``generator.json`` (architecture),
``generator.weights.h5`` (the weights with the best validation hole PSNR),
``last.weights.h5`` (the latest, for ``--init-weights``), ``tb/``
(TensorBoard scalars), ``metrics.json`` (steps, throughput, validation
history) and ``trained_on.json`` (paths relative to the data folder).
Export with ``cloudfill export --run <out> --out DIR``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from typing import Optional, Sequence

from training.defaults import ADVERSARIAL, DEFAULT_TRAIN_MINUTES, RECONSTRUCTION, default_data_dir

FIT_MODULE = "training.fit"  # Loaded once Keras's backend is chosen (see main).


def _flag(value: str) -> bool:
  """``1``/``true`` or ``0``/``false``."""
  if value.lower() in ("1", "true"):
    return True
  if value.lower() in ("0", "false"):
    return False
  raise ValueError("expected 1, 0, true or false")


# What a --variant may override, and how its value is read.
VARIANT_KEYS = {
    "lr": float,
    "loss": str,
    "ema": float,
    "clipnorm": float,
    "tv_weight": float,
    "widths": lambda v: v.replace("/", ","),
    "stem": int,
    "gan": str,
    "adv_weight": float,
    "fm_weight": float,
    "seed": int,
    "attention": _flag,
}


def parse_variant(text: str) -> tuple[str, dict]:
  """``"NAME:KEY=VALUE,..."`` -> ``(NAME, {key: value})`` (keys as in
  :data:`VARIANT_KEYS`, dashes or underscores)."""
  name, _, rest = text.partition(":")
  if not name or not name.replace("_", "").replace("-", "").isalnum():
    raise ValueError(f"--variant {text!r}: NAME must be letters, digits, - or _")
  overrides = {}
  for item in filter(None, rest.split(",")):
    key, eq, value = item.partition("=")
    key = key.strip().replace("-", "_")
    if not eq or key not in VARIANT_KEYS:
      raise ValueError(f"--variant {text!r}: {item!r} is not KEY=VALUE with KEY in {', '.join(VARIANT_KEYS)}")
    try:
      overrides[key] = VARIANT_KEYS[key](value.strip())
    except ValueError as e:
      raise ValueError(f"--variant {text!r}: {item!r}: {e}") from None
  if overrides.get("loss", "l1") not in RECONSTRUCTION:
    raise ValueError(f"--variant {text!r}: loss must be one of {', '.join(RECONSTRUCTION)}")
  if overrides.get("gan", "none") not in ("none",) + ADVERSARIAL:
    raise ValueError(f"--variant {text!r}: gan must be none or one of {', '.join(ADVERSARIAL)}")
  return name, overrides


def _parse(argv):
  p = argparse.ArgumentParser(prog="cloudfill train",
                              description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  a = p.add_argument
  a("--data",
    default=None,
    help="folder of rasters (with cloud_masks/ inside) or a training bundle .npz "
    "(default: $CLOUDFILL_SHARED_DATA or ../shared/data beside the repository)%(default).0s")
  a("--out", default="runs/train", help="run directory")
  a("--bands", type=int, default=3)
  a("--crop", type=int, default=128, help="training crop side")
  a("--region", type=int, default=0, help="context region side (default 2 x crop)")
  a("--val-size", type=int, default=256, help="validation window side")
  a("--val-tiles", type=int, default=48, help="validation windows per set (guided, unguided)")
  a("--batch", type=int, default=16)
  a("--steps", type=int, default=0, help="stop after this many steps (0: --minutes decides)")
  a("--minutes",
    type=float,
    default=None,
    help=f"stop after this much wall time (default {DEFAULT_TRAIN_MINUTES:g} when --steps is not "
    "given either)")
  a("--lr", type=float, default=1e-3)
  a("--tv-weight", type=float, default=0.01)
  a("--loss", choices=RECONSTRUCTION, default="l1", help="hole reconstruction loss (mse: what hole PSNR measures)")
  a("--ema", type=float, default=0.0, help="decay of a moving average of the weights, validated and saved (0: none)")
  a("--clipnorm", type=float, default=0.0, help="global gradient-norm clip (0: none)")
  a("--crops-per-region", type=int, default=2, help="training crops cut from each context region")
  a("--region-reuse",
    type=int,
    default=1,
    help="consecutive batches that share their regions' contexts (each batch takes its own crops, "
    "rotated and flipped; the context's cost per crop falls by this factor)")
  a("--variant",
    action="append",
    default=[],
    metavar="NAME:KEY=VALUE,...",
    help="train several models on the same batches, one folder each under --out; KEY is one of "
    f"{', '.join(VARIANT_KEYS)} (widths as 24/48/96/128); may be given more than once")
  a("--gan", choices=("none",) + ADVERSARIAL, default="none")
  a("--adv-weight", type=float, default=0.01)
  a("--fm-weight", type=float, default=1.0)
  a("--gan-after", type=float, default=0.0, help="fraction of the run that is L1-only before the adversarial terms")
  a("--stem", type=int, default=None, help="stem channels")
  a("--widths", default=None, help="comma-separated channels of the stride-2 levels")
  a("--attention",
    action="store_true",
    help="contextual attention over known ground on the first decoder level (training/attention.py); "
    "with --init-weights of a model without it, starts from that model's outputs")
  a("--init-weights", default=None, help="start from these generator weights")
  a("--mixed-precision", choices=("auto", "bf16", "off"), default="auto", help="auto: bf16 on a GPU, float32 on a CPU")
  a("--workers", type=int, default=-1, help="data processes (-1: cores - 1)")
  a("--seed", type=int, default=0)
  a("--val-every", type=float, default=60.0, help="seconds between validations")
  a("--log-every", type=int, default=50)
  args = p.parse_args(argv)
  try:
    args.variants = [parse_variant(v) for v in args.variant]
  except ValueError as e:
    p.error(str(e))
  if len({n for n, _ in args.variants}) != len(args.variants):
    p.error("--variant names must differ")
  if args.region_reuse < 1 or args.crops_per_region < 1:
    p.error("--region-reuse and --crops-per-region must be 1 or more")
  args.data = args.data or default_data_dir()
  if args.minutes is None:  # Never train forever by default.
    args.minutes = 0.0 if args.steps else DEFAULT_TRAIN_MINUTES
  return args


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``cloudfill train``: chooses Keras's JAX backend, then runs :func:`training.fit.fit`."""
  args = _parse(argv)
  if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "jax":
    # Keras is already loaded with another backend in this process (e.g. by a
    # test): train in a fresh interpreter under JAX.
    env = dict(os.environ, KERAS_BACKEND="jax")
    return subprocess.call([sys.executable, "-m", "training.train", *(argv if argv is not None else sys.argv[1:])],
                           env=env)
  os.environ.setdefault("KERAS_BACKEND", "jax")
  if os.environ["KERAS_BACKEND"] != "jax":
    print("cloudfill train: runs under the JAX backend; unset KERAS_BACKEND or set it to jax", file=sys.stderr)
    return 2
  if not os.path.exists(args.data):
    print(f"cloudfill train: --data {args.data} does not exist", file=sys.stderr)
    return 2
  # Keras picks its backend when first imported, and training.fit imports the
  # models: it is loaded by name only now that the backend is chosen.
  return importlib.import_module(FIT_MODULE).fit(args)


if __name__ == "__main__":
  raise SystemExit(main())
