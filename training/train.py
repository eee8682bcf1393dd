"""``cloudfill train``: train the partial-conv generator (optionally with a
PatchGAN stage after an L1-only warm-up).

Example (the shipped default model)::

  cloudfill train --data /work/shared/data --out runs/default \
      --minutes 55 --gan none

Writes into ``--out``: ``generator.json`` (architecture),
``generator.weights.h5`` (best validation hole PSNR), ``ckpt/`` (latest
generator + discriminator + optimisers, for ``--resume``), ``tb/``
(TensorBoard scalars and image grids), ``metrics.json`` and
``trained_on.json``. Export with ``cloudfill export --run <out>``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from typing import Optional, Sequence

import numpy as np

from training.defaults import DEFAULT_TRAIN_MINUTES, default_data_dir


def _parse(argv):
  p = argparse.ArgumentParser(prog="cloudfill train",
                              description=__doc__.split("\n\n")[0])
  a = p.add_argument
  a("--data", default=default_data_dir(),
    help="folder or glob of GeoTIFF/PNG scenes or tiles (default: $CLOUDFILL_SHARED_DATA "
         "or ../shared/data beside the repository, here %(default)s)")
  a("--cloud-masks", default=None,
    help="folder of real cloud masks (default: <data>/cloud_masks)")
  a("--out", default="runs/train", help="run directory")
  a("--bands", type=int, default=3)
  a("--crop", type=int, default=128, help="training crop side")
  a("--val-size", type=int, default=256, help="validation window side")
  a("--val-tiles", type=int, default=32)
  a("--batch", type=int, default=16, help="global batch size")
  a("--steps", type=int, default=0, help="stop after this many steps")
  a("--minutes", type=float, default=None,
    help="stop after this much wall time (the LR schedule follows it); "
         f"default {DEFAULT_TRAIN_MINUTES:g} when --steps is not given either")
  a("--lr", type=float, default=5e-4)
  a("--lr-min", type=float, default=0.02,
    help="final LR as a fraction of --lr (cosine decay)")
  a("--hole-weight", type=float, default=6.0)
  a("--valid-weight", type=float, default=1.0)
  a("--tv-weight", type=float, default=0.05)
  a("--gan", choices=("none", "hinge", "lsgan", "wgan-gp"), default="none")
  a("--warmup-steps", type=int, default=1000,
    help="L1-only steps before the GAN stage")
  a("--adv-weight", type=float, default=0.01)
  a("--fm-weight", type=float, default=0.1)
  a("--gp-weight", type=float, default=10.0)
  a("--norm", choices=("tile", "batch"), default="tile",
    help="tile: known-pixel standardisation (measured better); batch: BN")
  a("--no-residual", action="store_true",
    help="predict the image directly, not a correction of the push-pull fill")
  a("--encoder", default=None, help="comma-separated encoder channels")
  a("--decoder", default=None, help="comma-separated decoder channels")
  a("--jit", action="store_true", help="XLA-compile the train step")
  a("--resume", action="store_true", help="continue from <out>/ckpt")
  a("--seed", type=int, default=0)
  a("--val-every", type=int, default=250)
  a("--ckpt-every", type=int, default=250)
  a("--image-every", type=int, default=1000)
  a("--log-every", type=int, default=10)
  a("--no-progress", action="store_true", help="no tqdm bar")
  args = p.parse_args(argv)
  if args.minutes is None:  # Never train forever by default.
    args.minutes = 0.0 if args.steps else DEFAULT_TRAIN_MINUTES
  return args


def _grid(target, masked, output):
  """One image grid ``[1, 3H, N*W, C]`` (input with holes / output / truth)."""
  import tensorflow as tf
  rows = [masked, output, target]
  rows = [tf.concat(tf.unstack(tf.clip_by_value(r[:4, ..., :3], 0, 1)), 1)
          for r in rows]
  return tf.concat(rows, 0)[None]


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``cloudfill train`` entry point."""
  args = _parse(argv)
  import keras
  import tensorflow as tf
  from training import losses as L
  from training.data import build_samplers, fixed_set, make_dataset
  from training.discriminator import PatchDiscriminator
  from training.generator import PConvUNet

  os.makedirs(args.out, exist_ok=True)
  random.seed(args.seed)
  np.random.seed(args.seed)
  keras.utils.set_random_seed(args.seed)

  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    keras.mixed_precision.set_global_policy("mixed_float16")
  strategy = (tf.distribute.MirroredStrategy() if len(gpus) > 1
              else tf.distribute.get_strategy())
  cloud_dir = args.cloud_masks or os.path.join(args.data, "cloud_masks")
  if not os.path.isdir(cloud_dir):
    cloud_dir = None
  train_s, val_s, used = build_samplers(args.data, args.bands, args.crop,
                                        args.val_size, cloud_dir)
  with open(os.path.join(args.out, "trained_on.json"), "w") as f:
    json.dump(used, f, indent=1)
  val_x, val_m = fixed_set(val_s, args.val_tiles, seed=10_000 + args.seed)

  gcfg = dict(bands=args.bands, norm=args.norm,
              residual=not args.no_residual)
  if args.encoder:
    gcfg["encoder"] = [int(c) for c in args.encoder.split(",")]
  if args.decoder:
    gcfg["decoder"] = [int(c) for c in args.decoder.split(",")]
  use_gan = args.gan != "none"
  with strategy.scope():
    gen = PConvUNet(**gcfg)
    gen((tf.zeros([1, 64, 64, args.bands]), tf.zeros([1, 64, 64, 1])))
    disc = PatchDiscriminator() if use_gan else None
    if disc is not None:
      disc((tf.zeros([1, 64, 64, args.bands]), tf.zeros([1, 64, 64, 1])))
    g_opt = keras.optimizers.Adam(args.lr, beta_1=0.9, beta_2=0.999)
    d_opt = keras.optimizers.Adam(args.lr, beta_1=0.0, beta_2=0.9)
    inner_opts = [g_opt, d_opt]
    if gpus:
      g_opt = keras.mixed_precision.LossScaleOptimizer(g_opt)
      d_opt = keras.mixed_precision.LossScaleOptimizer(d_opt)
    g_opt.build(gen.trainable_variables)
    if disc is not None:
      d_opt.build(disc.trainable_variables)
  cfg = gen.get_config()
  cfg.pop("name", None)
  with open(os.path.join(args.out, "generator.json"), "w") as f:
    json.dump(cfg, f, indent=1)

  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  best = tf.Variable(-1.0, dtype=tf.float32, trainable=False)
  elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False)
  objs = dict(generator=gen, g_opt=g_opt, step=step, best=best,
              elapsed=elapsed)
  if disc is not None:
    objs.update(discriminator=disc, d_opt=d_opt)
  ckpt = tf.train.Checkpoint(**objs)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(args.out, "ckpt"),
                                       max_to_keep=2)
  if args.resume and manager.latest_checkpoint:
    ckpt.restore(manager.latest_checkpoint).expect_partial()
    print(f"resumed from {manager.latest_checkpoint} at step "
          f"{int(step.numpy())}")

  ds = make_dataset(train_s, args.batch, seed=args.seed,
                    start=int(step.numpy()) * args.batch)
  ds = strategy.experimental_distribute_dataset(ds)

  def g_losses(x, m, training):
    out = gen((x, m), training=training)
    l1, hole, valid = L.l1_hole_valid(x, out, m, args.hole_weight,
                                      args.valid_weight)
    tv = L.tv_hole_boundary(x, out, m)
    return out, {"l1": l1, "l1_hole": hole, "l1_valid": valid, "tv": tv}

  def step_fn(x, m, gan_on):
    logs = {}
    if use_gan and gan_on:
      with tf.GradientTape() as tape:
        out = tf.stop_gradient(gen((x, m), training=True))
        comp = L.composite(x, out, m)
        real, _ = disc((x, m), training=True)
        fake, _ = disc((comp, m), training=True)
        dl = L.d_loss(args.gan, real, fake)
        if args.gan == "wgan-gp":
          dl += args.gp_weight * L.gradient_penalty(disc, x, comp, m)
        logs["d_loss"] = dl
        scaled = dl / strategy.num_replicas_in_sync
        if gpus:
          scaled = d_opt.scale_loss(scaled)
      d_opt.apply_gradients(zip(tape.gradient(scaled,
                                              disc.trainable_variables),
                                disc.trainable_variables))
    with tf.GradientTape() as tape:
      out, parts = g_losses(x, m, True)
      total = parts["l1"] + args.tv_weight * parts["tv"]
      if use_gan and gan_on:
        comp = L.composite(x, out, m)
        fake, ffeat = disc((comp, m), training=False)
        _, rfeat = disc((x, m), training=False)
        parts["g_adv"] = L.g_loss(args.gan, fake)
        parts["fm"] = L.feature_matching(rfeat, ffeat)
        total += args.adv_weight * parts["g_adv"] + args.fm_weight * parts["fm"]
      parts["total"] = total
      scaled = total / strategy.num_replicas_in_sync
      if gpus:
        scaled = g_opt.scale_loss(scaled)
    grads = tape.gradient(scaled, gen.trainable_variables)
    g_opt.apply_gradients(zip(grads, gen.trainable_variables))
    logs.update(parts)
    return logs

  def make_train(gan_on):
    @tf.function(jit_compile=args.jit)
    def train(batch):
      x, m = batch
      per = strategy.run(step_fn, args=(x, m, gan_on))
      return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
              for k, v in per.items()}
    return train

  train_l1, train_gan = make_train(False), make_train(True)

  @tf.function
  def predict(x, m):
    return gen((x, m), training=False)

  def validate():
    outs = [predict(val_x[i:i + 8], val_m[i:i + 8]).numpy()
            for i in range(0, len(val_x), 8)]
    out = np.concatenate(outs)
    psnr = L.hole_psnr(val_x, out, val_m).numpy()
    return float(psnr.mean()), out

  writer = tf.summary.create_file_writer(os.path.join(args.out, "tb"))
  fill_psnr = None
  if int(step.numpy()) == 0 and gcfg["residual"]:
    fill_psnr, _ = validate()  # untrained residual model = push-pull fill
    print(f"val hole PSNR of the in-graph push-pull fill: {fill_psnr:.2f} dB")

  budget = args.minutes * 60.0
  total_steps = args.steps or None
  bar = None
  if not args.no_progress:
    from tqdm import tqdm
    bar = tqdm(total=total_steps, initial=int(step.numpy()),
               dynamic_ncols=True, mininterval=2.0)
  t_start = time.time() - float(elapsed.numpy())
  t_last, n_last = time.time(), 0
  lr_frac = args.lr_min
  for batch in ds:
    s = int(step.numpy())
    run_time = time.time() - t_start
    if (total_steps and s >= total_steps) or (budget and run_time >= budget):
      break
    if budget:
      frac = min(run_time / budget, 1.0)
    elif total_steps:
      frac = s / total_steps
    else:
      frac = 0.0
    lr = args.lr * (lr_frac + (1 - lr_frac) * 0.5
                    * (1 + math.cos(math.pi * frac)))
    for o in inner_opts:
      o.learning_rate.assign(lr)
    gan_on = use_gan and s >= args.warmup_steps
    logs = (train_gan if gan_on else train_l1)(batch)
    step.assign_add(1)
    s += 1
    n_last += 1
    if s % args.log_every == 0 or s == 1:
      vals = {k: float(v) for k, v in logs.items()}
      now = time.time()
      tput = n_last * args.batch / max(now - t_last, 1e-9)
      t_last, n_last = now, 0
      with writer.as_default(step=s):
        for k, v in vals.items():
          tf.summary.scalar(f"loss/{k}", v)
        tf.summary.scalar("tiles_per_s", tput)
        tf.summary.scalar("lr", lr)
      if bar is not None:
        bar.set_postfix(l1=f"{vals['l1']:.4f}", tv=f"{vals['tv']:.4f}",
                        tiles_s=f"{tput:.1f}", refresh=False)
      else:
        print(f"step {s} " + " ".join(f"{k}={v:.4f}" for k, v in
                                      vals.items()) + f" tiles/s={tput:.1f}",
              flush=True)
    if bar is not None:
      bar.update(1)
    if s % args.val_every == 0:
      psnr, out = validate()
      with writer.as_default(step=s):
        tf.summary.scalar("val/hole_psnr", psnr)
        if s % args.image_every == 0:
          tf.summary.image("val/masked_output_truth",
                           _grid(val_x, val_x * (1 - val_m), out))
      msg = f"step {s}: val hole PSNR {psnr:.2f} dB (best {best.numpy():.2f})"
      if psnr > best.numpy():
        best.assign(psnr)
        gen.save_weights(os.path.join(args.out, "generator.weights.h5"))
        msg += " saved"
      (bar.write if bar is not None else print)(msg)
    if s % args.ckpt_every == 0:
      elapsed.assign(time.time() - t_start)
      manager.save(checkpoint_number=s)
  if bar is not None:
    bar.close()
  elapsed.assign(time.time() - t_start)
  psnr, _ = validate()
  if psnr > best.numpy():
    best.assign(psnr)
    gen.save_weights(os.path.join(args.out, "generator.weights.h5"))
  if not os.path.exists(os.path.join(args.out, "generator.weights.h5")):
    gen.save_weights(os.path.join(args.out, "generator.weights.h5"))
  manager.save(checkpoint_number=int(step.numpy()))
  metrics = {"val_hole_psnr_db": round(float(best.numpy()), 3),
             "val_final_hole_psnr_db": round(psnr, 3),
             "val_tiles": args.val_tiles, "val_size": args.val_size,
             "val_split": "right-hand column strip of each scene (by area), "
                          "held-out cloud-mask files",
             "steps": int(step.numpy()), "batch": args.batch,
             "crop": args.crop, "train_minutes": round(
                 float(elapsed.numpy()) / 60, 1), "gan": args.gan,
             "seed": args.seed}
  if fill_psnr is not None:
    metrics["val_pushpull_fill_hole_psnr_db"] = round(fill_psnr, 3)
  prev = os.path.join(args.out, "metrics.json")
  if os.path.exists(prev) and fill_psnr is None:
    with open(prev) as f:
      old = json.load(f)
    if "val_pushpull_fill_hole_psnr_db" in old:
      metrics["val_pushpull_fill_hole_psnr_db"] = old[
          "val_pushpull_fill_hole_psnr_db"]
  with open(prev, "w") as f:
    json.dump(metrics, f, indent=1)
  print(json.dumps(metrics, indent=1))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
