"""The training run behind ``cloudfill train``: data, models, the loop, the records.

Loaded by :func:`training.train.main` once it has chosen Keras's JAX backend
(Keras picks its backend when first imported, and this module imports the
models). :func:`fit` is the run, top to bottom::

  data workers -> validation sets -> models (Trainer) -> loop of
  Trainer.train_step with a validation every --val-every seconds -> weights,
  metrics.json

The losses and steps are :class:`training.trainer.Trainer`'s.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Optional

import numpy as np

from training import data as D
from training import tb
from training.discriminator import MultiScaleDiscriminator
from training.generator import build_generator, load_weights
from training.sampling import sampler
from training.trainer import Trainer, TrainSpec, cosine_lr, set_mixed_precision

VAL_SEED = 1234


def score(figures: dict) -> float:
  """What "best" means: the sum of the validation sets' hole PSNRs."""
  return sum(v for k, v in figures.items() if k.endswith("_hole_psnr_db") and "context" not in k)


def validation_sets(args: argparse.Namespace) -> dict[str, dict]:
  """The fixed unguided (and, with places of two dates or more, guided) validation sets."""
  sets = {
      "unguided":
          sampler(args.data, args.bands, args.val_size, 0, "val", False, "val").fixed_set(args.val_tiles,
                                                                                          VAL_SEED,
                                                                                          guided=False)
  }
  try:  # Guided validation needs places with two dates or more.
    sets["guided"] = sampler(args.data, args.bands, args.val_size, 0, "val", True, "val").fixed_set(args.val_tiles,
                                                                                                    VAL_SEED,
                                                                                                    guided=True)
  except ValueError as e:
    print(f"no guided validation set: {e}", flush=True)
  return sets


def build_models(args: argparse.Namespace, mixed_precision: Optional[str]):
  """``(generator, discriminator or None)``, seeded, the generator from ``--init-weights`` if given."""
  import keras  # pylint: disable=import-outside-toplevel  (after the backend is chosen)
  set_mixed_precision(mixed_precision)
  keras.utils.set_random_seed(args.seed)
  gkw: dict[str, Any] = {}
  if args.stem:
    gkw["stem"] = args.stem
  if args.widths:
    gkw["widths"] = [int(v) for v in args.widths.split(",")]
  if args.attention:
    gkw["attention"] = True
  gen = build_generator(args.bands, 64, **gkw)
  if args.init_weights:
    load_weights(gen, args.init_weights)
  disc = None
  if args.gan != "none":
    disc = MultiScaleDiscriminator()
    disc((np.zeros((1, 64, 64, args.bands), np.float32), np.zeros((1, 64, 64, 1), np.float32)))
  return gen, disc


class TrainingRun:
  """One run's clock, validation history and records in ``--out``.

  Args:
    args: The parsed ``cloudfill train`` options.
    trainer: The :class:`Trainer` (it owns the generator).
    val_sets: The fixed validation sets.
  """

  def __init__(self, args: argparse.Namespace, trainer: Trainer, val_sets: dict[str, dict]):
    self.args, self.trainer, self.val_sets = args, trainer, val_sets
    self.writer = tb.ScalarWriter(os.path.join(args.out, "tb"))
    self.history: list[dict] = []
    self.best = -1.0
    self.budget = args.minutes * 60.0
    self.start = time.time()
    self.state = trainer.init_state()

  def done(self, step: int) -> bool:
    """``--steps`` reached, or (without ``--steps``) ``--minutes`` spent."""
    if self.args.steps and step >= self.args.steps:
      return True
    return not self.args.steps and time.time() - self.start >= self.budget

  def fraction(self, step: int) -> float:
    """How far the run is (0…1): by steps, or by wall time."""
    if self.args.steps:
      return step / self.args.steps
    return (time.time() - self.start) / max(self.budget, 1e-9)

  def validate(self, state: dict, step: int) -> None:
    """Validates; keeps the generator's weights when the score is the best so far."""
    figures = self.trainer.validate(state, self.val_sets)
    figures.update(step=step, seconds=round(time.time() - self.start, 1))
    self.history.append(figures)
    self.writer.scalars(step, {f"val/{k}": v for k, v in figures.items() if k not in ("step",)})
    if score(figures) > self.best:
      self.best = score(figures)
      self.trainer.write_back(state)
      self.trainer.gen.save_weights(os.path.join(self.args.out, "generator.weights.h5"))
    print(json.dumps(dict(figures, run=self.name)), flush=True)

  @property
  def name(self) -> str:
    return getattr(self.args, "variant", "") or os.path.basename(os.path.normpath(self.args.out))

  def log(self, step: int, crops: int, t_data: float, logs: dict) -> None:
    logs = {k: float(v) for k, v in logs.items()}
    self.writer.scalars(step, {f"train/{k}": v for k, v in logs.items()})
    el = time.time() - self.start
    print(f"{self.name} step {step} {el:.0f}s {crops / el:.0f} crops/s data-wait {t_data:.0f}s " +
          " ".join(f"{k}={v:.4f}" for k, v in logs.items()),
          flush=True)


def variant_args(args: argparse.Namespace) -> list[argparse.Namespace]:
  """One namespace per trained model: ``args`` itself, or with ``--variant``s,
  a copy per variant with its overrides and ``out`` = ``args.out/NAME``."""
  if not getattr(args, "variants", None):
    return [args]
  out = []
  for name, overrides in args.variants:
    v = copy.copy(args)
    for k, value in overrides.items():
      setattr(v, k, value)
    v.out, v.variant = os.path.join(args.out, name), name
    out.append(v)
  return out


def start_run(args: argparse.Namespace, val_sets: dict, train_files: list[str],
              mixed_precision: Optional[str]) -> TrainingRun:
  """Builds one model's :class:`Trainer` and :class:`TrainingRun`; writes its
  ``generator.json`` and ``trained_on.json``."""
  gen, disc = build_models(args, mixed_precision)
  # Every TrainSpec field that the command line sets (hole_weight is not one).
  spec = TrainSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSpec) if hasattr(args, f.name)})
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "generator.json"), "w", encoding="utf-8") as f:
    json.dump(gen.get_config(), f, indent=2)
  with open(os.path.join(args.out, "trained_on.json"), "w", encoding="utf-8") as f:
    json.dump(sorted(set(train_files)), f, indent=2)
  return TrainingRun(args, Trainer(gen, disc, spec), val_sets)


def init_weights_record(path: Optional[str]) -> Optional[dict]:
  """What a run started from (``--init-weights``): the file's name and SHA-256, or None."""
  if not path:
    return None
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  return {"file": os.path.basename(path), "sha256": digest}


def finish_run(run: TrainingRun, step: int, crops: int, timing: dict, device: dict) -> dict:
  """Final validation, ``last.weights.h5`` and ``metrics.json``; returns the best figures."""
  args, trainer = run.args, run.trainer
  run.validate(run.state, step)
  trainer.write_back(run.state)
  trainer.gen.save_weights(os.path.join(args.out, "last.weights.h5"))
  elapsed = time.time() - run.start
  best_fig = max(run.history, key=score)
  metrics = {
      "steps": step,
      "batch": args.batch,
      "crop": args.crop,
      "seconds": round(elapsed, 1),
      "crops_per_s": round(crops / max(elapsed, 1e-9), 1),
      **timing,
      **device,
      "models_trained_together": len(getattr(args, "variants", None) or [None]),
      "spec": dataclasses.asdict(trainer.spec),
      "gan_after": args.gan_after,
      "params": int(trainer.gen.count_params()),
      "val_tiles": args.val_tiles,
      "val_size": args.val_size,
      "best": best_fig,
      "history": run.history,
      "val_split": "right-hand column strip of each scene (by area), held-out cloud-mask files",
      "init_weights": init_weights_record(args.init_weights),
      "crops_per_region": args.crops_per_region,
      "region_reuse": args.region_reuse,
  }
  with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
    json.dump(metrics, f, indent=2)
  run.writer.close()
  print(f"done {run.name}: {step} steps in {elapsed:.0f}s; best {json.dumps(best_fig)}")
  return best_fig


def fit(args: argparse.Namespace) -> int:
  """Trains as ``args`` say and writes the run's files into ``args.out``
  (with ``--variant``s: several models on the same batches, one folder each
  under ``args.out``); returns 0."""
  workers = (os.cpu_count() or 2) - 1 if args.workers < 0 else args.workers
  # Worker processes start before JAX does (spawn, so JAX's threads are safe either way).
  stream = D.batches(sampler, (args.data, args.bands, args.crop, args.region, "train"),
                     args.batch,
                     seed=args.seed,
                     workers=workers,
                     crops_per_region=args.crops_per_region,
                     region_reuse=args.region_reuse)
  batch = next(stream)
  val_sets = validation_sets(args)
  train_files = sampler(args.data, args.bands, args.crop, args.region, "train").files

  import jax  # pylint: disable=import-outside-toplevel  (after the data workers started)
  gpu = any(d.platform == "gpu" for d in jax.devices())
  mp = {"auto": "mixed_bfloat16" if gpu else None, "bf16": "mixed_bfloat16", "off": None}[args.mixed_precision]
  runs = [start_run(v, val_sets, train_files, mp) for v in variant_args(args)]
  for run in runs:
    run.validate(run.state, 0)
  clock = runs[0]  # One wall-time budget for all: they train on the same batches.
  for run in runs:
    run.start = clock.start = time.time()

  last_val = clock.start
  step, crops, compile_s, t_data = 0, 0, None, 0.0
  while not clock.done(step):
    frac = clock.fraction(step)
    t0 = time.time()
    logs = []
    for run in runs:
      adversarial = run.trainer.disc is not None and frac >= run.args.gan_after
      run.state = run.trainer.set_lr(run.state, cosine_lr(run.args.lr, frac))
      run.state, run_logs = run.trainer.train_step(run.state, batch, adversarial=adversarial)
      logs.append(run_logs)
    if compile_s is None:
      jax.block_until_ready(runs[-1].state["g_tv"])
      compile_s = time.time() - t0
    step += 1
    crops += args.batch
    if step % args.log_every == 0:
      for run, run_logs in zip(runs, logs):
        run.log(step, crops, t_data, run_logs)
    t1 = time.time()
    batch = next(stream)
    t_data += time.time() - t1
    if time.time() - last_val >= args.val_every:
      for run in runs:
        run.validate(run.state, step)
      last_val = time.time()
  timing = {"compile_s": round(compile_s or 0, 1), "data_wait_s": round(t_data, 1)}
  device = {"device": str(jax.devices()[0]), "gpu": gpu, "mixed_precision": mp or "float32"}
  for run in runs:
    finish_run(run, step, crops, timing, device)
  return 0
