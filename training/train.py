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
import json
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

from training.defaults import DEFAULT_TRAIN_MINUTES, default_data_dir


def _parse(argv):
  p = argparse.ArgumentParser(prog="cloudfill train", description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  a = p.add_argument
  a("--data", default=None,
    help="folder of rasters (with cloud_masks/ inside) or a training bundle .npz "
         "(default: $CLOUDFILL_SHARED_DATA or ../shared/data beside the repository)")
  a("--out", default="runs/train", help="run directory")
  a("--bands", type=int, default=3)
  a("--crop", type=int, default=128, help="training crop side")
  a("--region", type=int, default=0, help="context region side (default 2 x crop)")
  a("--val-size", type=int, default=256, help="validation window side")
  a("--val-tiles", type=int, default=48, help="validation windows per set (guided, unguided)")
  a("--batch", type=int, default=16)
  a("--steps", type=int, default=0, help="stop after this many steps (0: --minutes decides)")
  a("--minutes", type=float, default=None,
    help=f"stop after this much wall time (default {DEFAULT_TRAIN_MINUTES:g} when --steps is not "
         "given either)")
  a("--lr", type=float, default=1e-3)
  a("--tv-weight", type=float, default=0.01)
  a("--gan", choices=("none", "hinge", "lsgan"), default="none")
  a("--adv-weight", type=float, default=0.01)
  a("--fm-weight", type=float, default=1.0)
  a("--gan-after", type=float, default=0.0,
    help="fraction of the run that is L1-only before the adversarial terms")
  a("--stem", type=int, default=None, help="stem channels")
  a("--widths", default=None, help="comma-separated channels of the stride-2 levels")
  a("--init-weights", default=None, help="start from these generator weights")
  a("--mixed-precision", choices=("auto", "bf16", "off"), default="auto",
    help="auto: bf16 on a GPU, float32 on a CPU")
  a("--workers", type=int, default=-1, help="data processes (-1: cores - 1)")
  a("--seed", type=int, default=0)
  a("--val-every", type=float, default=60.0, help="seconds between validations")
  a("--log-every", type=int, default=50)
  args = p.parse_args(argv)
  args.data = args.data or default_data_dir()
  if args.minutes is None:  # Never train forever by default.
    args.minutes = 0.0 if args.steps else DEFAULT_TRAIN_MINUTES
  return args


def _sampler(data: str, bands: int, crop: int, region: int, split: str,
             guided_only: bool = False, seed_masks: str = "train"):
  """Picklable factory: builds the :class:`training.data.Sampler` (in each worker)."""
  from training import data as D  # pylint: disable=import-outside-toplevel
  from training.masks import MaskGenerator, cloud_mask_files  # pylint: disable=import-outside-toplevel
  if data.endswith(".npz"):
    from training import bundle  # pylint: disable=import-outside-toplevel
    scenes, clouds = bundle.load(data)
    masks = clouds[seed_masks]
  else:
    from training.scenes import list_rasters, read_scenes  # pylint: disable=import-outside-toplevel
    from training.bundle import _keep  # pylint: disable=import-outside-toplevel
    files = [f for f in list_rasters(data) if _keep(f)]
    scenes = read_scenes(files)
    for s in scenes:
      s.path = os.path.relpath(s.path, data)
    masks = cloud_mask_files(os.path.join(data, "cloud_masks"), seed_masks)
  places = D.group_places(scenes)
  if guided_only:
    places = [p for p in places if len(p.scenes) > 1]
  if split == "train":
    return D.Sampler(places, crop, MaskGenerator(masks), "train", bands=bands, region=region or 2 * crop)
  return D.Sampler(places, crop, MaskGenerator(masks, weights={"clouds": 1.0}), "val", bands=bands,
                   region=crop, augment=False, p_guide=1.0 if guided_only else 0.0)


def _score(figures: dict) -> float:
  """What "best" means: the sum of the validation sets' hole PSNRs."""
  return sum(v for k, v in figures.items() if k.endswith("_hole_psnr_db") and "context" not in k)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parse(argv)
  if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "jax":
    # Keras is already loaded with another backend in this process (e.g. by a
    # test): train in a fresh interpreter under JAX.
    import subprocess  # pylint: disable=import-outside-toplevel
    env = dict(os.environ, KERAS_BACKEND="jax")
    return subprocess.call([sys.executable, "-m", "training.train",
                            *(argv if argv is not None else sys.argv[1:])], env=env)
  os.environ.setdefault("KERAS_BACKEND", "jax")
  if os.environ["KERAS_BACKEND"] != "jax":
    print("cloudfill train: runs under the JAX backend; unset KERAS_BACKEND or set it to jax",
          file=sys.stderr)
    return 2
  if not os.path.exists(args.data):
    print(f"cloudfill train: --data {args.data} does not exist", file=sys.stderr)
    return 2
  from training import data as D  # pylint: disable=import-outside-toplevel
  workers = (os.cpu_count() or 2) - 1 if args.workers < 0 else args.workers
  # Worker processes start before JAX does (spawn, so JAX's threads are safe either way).
  stream = D.batches(_sampler, (args.data, args.bands, args.crop, args.region, "train"),
                     args.batch, seed=args.seed, workers=workers)
  first = next(stream)
  val_sets = {"unguided": _sampler(args.data, args.bands, args.val_size, 0, "val", False, "val"
                                    ).fixed_set(args.val_tiles, 1234, guided=False)}
  try:  # Guided validation needs places with two dates or more.
    val_sets["guided"] = _sampler(args.data, args.bands, args.val_size, 0, "val", True, "val"
                                  ).fixed_set(args.val_tiles, 1234, guided=True)
  except ValueError as e:
    print(f"no guided validation set: {e}", flush=True)
  train_files = _sampler(args.data, args.bands, args.crop, args.region, "train").files

  import jax  # pylint: disable=import-outside-toplevel
  import keras  # pylint: disable=import-outside-toplevel
  from training import tb  # pylint: disable=import-outside-toplevel
  from training.discriminator import MultiScaleDiscriminator  # pylint: disable=import-outside-toplevel
  from training.generator import build_generator  # pylint: disable=import-outside-toplevel
  from training.trainer import Trainer, TrainSpec, cosine_lr, set_mixed_precision  # pylint: disable=import-outside-toplevel

  gpu = any(d.platform == "gpu" for d in jax.devices())
  mp = {"auto": "mixed_bfloat16" if gpu else None, "bf16": "mixed_bfloat16", "off": None}
  set_mixed_precision(mp[args.mixed_precision])
  keras.utils.set_random_seed(args.seed)
  gkw = {}
  if args.stem:
    gkw["stem"] = args.stem
  if args.widths:
    gkw["widths"] = [int(v) for v in args.widths.split(",")]
  gen = build_generator(args.bands, 64, **gkw)
  if args.init_weights:
    gen.load_weights(args.init_weights)
  disc = None
  if args.gan != "none":
    disc = MultiScaleDiscriminator()
    disc((np.zeros((1, 64, 64, args.bands), np.float32), np.zeros((1, 64, 64, 1), np.float32)))
  spec = TrainSpec(lr=args.lr, tv_weight=args.tv_weight, gan=args.gan,
                   adv_weight=args.adv_weight, fm_weight=args.fm_weight)
  trainer = Trainer(gen, disc, spec)
  state = trainer.init_state()
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "generator.json"), "w", encoding="utf-8") as f:
    json.dump(gen.get_config(), f, indent=2)
  with open(os.path.join(args.out, "trained_on.json"), "w", encoding="utf-8") as f:
    json.dump(sorted(set(train_files)), f, indent=2)
  writer = tb.ScalarWriter(os.path.join(args.out, "tb"))

  budget = args.minutes * 60.0
  history, best = [], -1.0
  start = time.time()
  last_val = start
  step, crops, batch = 0, 0, first
  compile_s = None

  def done():
    if args.steps and step >= args.steps:
      return True
    return not args.steps and time.time() - start >= budget

  def validate():
    nonlocal best
    figures = trainer.validate(state, val_sets)
    figures.update(step=step, seconds=round(time.time() - start, 1))
    history.append(figures)
    writer.scalars(step, {f"val/{k}": v for k, v in figures.items() if k not in ("step",)})
    score = _score(figures)
    if score > best:
      best = score
      trainer.write_back(state)
      gen.save_weights(os.path.join(args.out, "generator.weights.h5"))
    print(json.dumps(figures), flush=True)

  validate()
  t_data = 0.0
  while not done():
    frac = (step / args.steps) if args.steps else (time.time() - start) / max(budget, 1e-9)
    adversarial = disc is not None and frac >= args.gan_after
    state = trainer.set_lr(state, cosine_lr(args.lr, frac))
    t0 = time.time()
    state, logs = trainer.train_step(state, batch, adversarial=adversarial)
    if compile_s is None:
      jax.block_until_ready(state["g_tv"])
      compile_s = time.time() - t0
    step += 1
    crops += args.batch
    t1 = time.time()
    batch = next(stream)
    t_data += time.time() - t1
    if step % args.log_every == 0:
      logs = {k: float(v) for k, v in logs.items()}
      writer.scalars(step, {f"train/{k}": v for k, v in logs.items()})
      el = time.time() - start
      print(f"step {step} {el:.0f}s {crops / el:.0f} crops/s data-wait {t_data:.0f}s "
            + " ".join(f"{k}={v:.4f}" for k, v in logs.items()), flush=True)
    if time.time() - last_val >= args.val_every:
      validate()
      last_val = time.time()
  validate()
  trainer.write_back(state)
  gen.save_weights(os.path.join(args.out, "last.weights.h5"))
  elapsed = time.time() - start
  best_fig = max(history, key=_score)
  metrics = {
      "steps": step, "batch": args.batch, "crop": args.crop, "seconds": round(elapsed, 1),
      "crops_per_s": round(crops / max(elapsed, 1e-9), 1), "compile_s": round(compile_s or 0, 1),
      "data_wait_s": round(t_data, 1), "device": str(jax.devices()[0]), "gpu": gpu,
      "mixed_precision": mp[args.mixed_precision] or "float32", "gan": args.gan,
      "gan_after": args.gan_after, "params": int(gen.count_params()),
      "val_tiles": args.val_tiles, "val_size": args.val_size, "best": best_fig, "history": history,
      "val_split": "right-hand column strip of each scene (by area), held-out cloud-mask files",
  }
  with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
    json.dump(metrics, f, indent=2)
  writer.close()
  print(f"done: {step} steps in {elapsed:.0f}s; best {json.dumps(best_fig)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
