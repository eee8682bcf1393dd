"""How much can a network add over its context? Oracle corrections on the trainer's validation windows (issue 11).

The generator predicts a correction of its context fill (:mod:`transforms.context`,
:mod:`transforms.regression`). Issue 11 asks that correction to be worth +1 dB
of hole PSNR. This measures what corrections of a given *smoothness* would
be worth if they were known exactly: the residual ``truth - context`` inside
the holes, smoothed, added back to the context.

* **per-window offset**: each window's mean residual per band (a tone fix);
* **smooth correction, σ px**: the residual smoothed inside the holes by a
  normalised Gaussian of σ px (detail finer than about σ is left out).

Beside them: the model's own gain over the context on the same windows. The
windows are the trainer's fixed validation sets (:func:`training.fit.validation_sets`:
48 windows of 256², held-out strip of every place, held-out real cloud masks;
unguided and guided), so the figures line up with the trainer's
``*_hole_psnr_db`` records. Hole PSNR is pooled over every hole pixel of the
set, on the 0…1 scale the model sees.

Run::

  python -m benchmarks.headroom [--data DIR_OR_BUNDLE] [--model DIR] [--out benchmarks/results/training]

Writes ``headroom.json`` and ``headroom.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import common  # noqa: E402
from model_loader.native import LoadedModel  # noqa: E402  (TensorFlow is imported on loading)
from training.fit import VAL_SEED  # noqa: E402
from training.sampling import sampler  # noqa: E402

SIGMAS = (32, 16, 8, 4)


def hole_psnr(values: np.ndarray, truth: np.ndarray, holes: np.ndarray) -> float:
  """Pooled hole PSNR (dB) on the 0…1 scale; ``holes`` ``[N, H, W]`` bool."""
  err = (values.astype(np.float64) - truth)[holes]
  return float(10 * np.log10(1.0 / np.mean(err**2)))


def offset_oracle(context: np.ndarray, truth: np.ndarray, holes: np.ndarray) -> np.ndarray:
  """The context plus each window's mean residual per band in its holes."""
  out = context.astype(np.float64).copy()
  for i in range(len(out)):
    if holes[i].any():
      out[i][holes[i]] += (truth[i][holes[i]] - out[i][holes[i]]).mean(0)
  return out


def smooth_oracle(context: np.ndarray, truth: np.ndarray, holes: np.ndarray, sigma: float) -> np.ndarray:
  """The context plus its residual smoothed inside the holes (normalised Gaussian of ``sigma`` px)."""
  out = context.astype(np.float64).copy()
  for i in range(len(out)):
    h = holes[i].astype(np.float64)
    if not h.any():
      continue
    weight = np.maximum(ndimage.gaussian_filter(h, sigma), 1e-12)
    for c in range(out.shape[-1]):
      residual = (truth[i][..., c] - out[i][..., c]) * h
      out[i][..., c] += np.where(holes[i], ndimage.gaussian_filter(residual, sigma) / weight, 0.0)
  return out


def model_fill(model_dir: str, batch: dict[str, np.ndarray]) -> np.ndarray:
  """The model's output on the set (the ``restore`` signature, 8 windows a call)."""
  model = LoadedModel(model_dir)
  extra = {k: batch[k] for k in ("context", "guide", "guide_mask")}
  return model(batch["image"], batch["mask"], **extra)


def measure(data: str, model_dir: Optional[str], guided: bool, n: int = 48) -> dict:
  """Every figure of one validation set."""
  batch = sampler(data, 3, 256, 0, "val", guided, "val").fixed_set(n, VAL_SEED, guided=guided)
  truth = batch["target"].astype(np.float64)
  context = batch["context"]
  holes = batch["mask"][..., 0] > 0.5
  base = hole_psnr(context, truth, holes)
  rec = {
      "windows": n,
      "hole_fraction": float(holes.mean()),
      "context_hole_psnr_db": base,
      "gain_db": {
          "per-window offset": hole_psnr(offset_oracle(context, truth, holes), truth, holes) - base
      },
  }
  for s in SIGMAS:
    rec["gain_db"][f"smooth correction, sigma {s} px"] = hole_psnr(smooth_oracle(context, truth, holes, s), truth,
                                                                   holes) - base
  if model_dir:
    composited = np.where(holes[..., None], model_fill(model_dir, batch), truth)
    rec["model_gain_db"] = hole_psnr(composited, truth, holes) - base
  return rec


def markdown(result: dict) -> str:
  sets = result["sets"]
  names = list(next(iter(sets.values()))["gain_db"])
  lines = [
      f"Oracle corrections of the context fill on the trainer's validation windows ({result['data']}); "
      f"model {result['model']}. Machine: {result['machine']['cpu_model']}, {result['machine']['cpus_usable']} cores.",
      "", "| correction known exactly | " + " | ".join(f"{k} (dB over context)" for k in sets) + " |",
      "|---|" + "---|" * len(sets)
  ]
  for name in names:
    lines.append(f"| {name} | " + " | ".join(f"+{sets[k]['gain_db'][name]:.2f}" for k in sets) + " |")
  if all("model_gain_db" in v for v in sets.values()):
    lines.append("| **the model's own correction** | " + " | ".join(f"{sets[k]['model_gain_db']:+.2f}" for k in sets) +
                 " |")
  lines.append("| context hole PSNR dB | " + " | ".join(f"{sets[k]['context_hole_psnr_db']:.2f}" for k in sets) + " |")
  return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.headroom", description=__doc__.split("\n\n")[0])
  p.add_argument("--data", default=common.SHARED, help="data folder or training bundle .npz")
  p.add_argument("--model", default=os.path.join(ROOT, "model_loader", "default_model"))
  p.add_argument("--no-model", action="store_true", help="oracles only (no TensorFlow)")
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "training"))
  args = p.parse_args(argv)
  model = None if args.no_model else args.model
  result = {
      "data": os.path.relpath(args.data, ROOT) if os.path.isabs(args.data) else args.data,
      "model": model and os.path.relpath(model, ROOT),
      "machine": common.machine(),
      "sets": {
          "unguided": measure(args.data, model, False),
          "guided": measure(args.data, model, True)
      },
  }
  os.makedirs(args.out, exist_ok=True)
  common.write_json(os.path.join(args.out, "headroom.json"), result)
  text = markdown(result)
  with open(os.path.join(args.out, "headroom.md"), "w", encoding="utf-8") as f:
    f.write(text)
  print(text)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
