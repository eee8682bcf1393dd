"""Export a generator as a cloudfill SavedModel (and optionally TFLite).

The SavedModel honours :mod:`model_loader.contract`: signatures ``restore``
and ``serving_default`` and the asset ``assets/cloudfill.json``. It is
written with ``keras.export.ExportArchive`` (two endpoints): tfx-bsl's TF1
session loader (``CreateModelHandler``) loads that, whereas a plain
``tf.saved_model.save`` of a wrapped Keras 3 model failed there.

Command line (``cloudfill export``)::

  cloudfill export --weights runs/x/generator.weights.h5 \
      --config runs/x/generator.json --out models/x [--overwrite] \
      [--version 2.0] [--tflite runs/x/tflite --data ../shared/data]

The weights may come from a JAX run (``.weights.h5``): the generator is the
same backend-agnostic Keras 3 model, rebuilt here under TensorFlow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Iterable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from model_loader import contract
from model_loader.contract import TFLITE_ASSET, ModelCard
from training.defaults import default_data_dir
from training.generator import build_generator, load_weights
from training.sampling import sampler

V2_INPUTS = contract.ALL_INPUTS


def _restore_fn(generator):

  def restore(image, mask, context, guide, guide_mask):
    out = generator(dict(image=image, mask=mask, context=context, guide=guide, guide_mask=guide_mask), training=False)
    return {contract.OUTPUT_RESTORED: tf.cast(out, tf.float32)}

  return restore


def _restore_specs(bands: int, n=None, size=None):
  img = [n, size, size, bands]
  msk = [n, size, size, 1]
  return [
      tf.TensorSpec(img, tf.float32, name=contract.INPUT_IMAGE),
      tf.TensorSpec(msk, tf.float32, name=contract.INPUT_MASK),
      tf.TensorSpec(img, tf.float32, name=contract.INPUT_CONTEXT),
      tf.TensorSpec(img, tf.float32, name=contract.INPUT_GUIDE),
      tf.TensorSpec(msk, tf.float32, name=contract.INPUT_GUIDE_MASK)
  ]


def _serving_fn(generator, window: int, bands: int):
  n_img, n_msk = window * window * bands, window * window
  spec = {
      contract.INPUT_IMAGE:
          tf.io.FixedLenFeature([n_img], tf.float32),
      contract.INPUT_MASK:
          tf.io.FixedLenFeature([n_msk], tf.float32),
      contract.INPUT_CONTEXT:
          tf.io.FixedLenFeature([n_img], tf.float32),
      # No guide unless the example carries one.
      contract.INPUT_GUIDE:
          tf.io.FixedLenFeature([n_img], tf.float32, default_value=[0.0] * n_img),
      contract.INPUT_GUIDE_MASK:
          tf.io.FixedLenFeature([n_msk], tf.float32, default_value=[1.0] * n_msk),
  }
  assert tuple(spec) == contract.EXAMPLE_FEATURES_V2

  def serve(examples):
    feats = tf.io.parse_example(examples, spec)
    shaped = {k: tf.reshape(v, [-1, window, window, bands if v.shape[-1] == n_img else 1]) for k, v in feats.items()}
    return {contract.OUTPUT_RESTORED: tf.cast(generator(shaped, training=False), tf.float32)}

  return serve


def export_saved_model(generator: keras.Model, card: ModelCard, out_dir: str) -> str:
  """Writes ``generator`` as a contract-conforming SavedModel.

  Args:
    generator: A built :class:`training.generator.CloudfillGenerator`.
    card: The model card; ``card.bands`` and ``card.window`` fix the
      ``serving_default`` example layout.
    out_dir: Target directory; replaced if it exists.

  Returns:
    ``out_dir``.
  """
  bands, window = int(card.bands), int(card.window)
  archive = keras.export.ExportArchive()
  # No archive.track(generator): the endpoints' variables are tracked by
  # add_endpoint, and track() on the TF backend stores every weight a second
  # time (keras-team/keras#23553: twice the size on disk and in every loader).
  archive.add_endpoint(name=contract.SIGNATURE_RESTORE,
                       fn=_restore_fn(generator),
                       input_signature=_restore_specs(bands))
  archive.add_endpoint(name=contract.SIGNATURE_SERVING,
                       fn=_serving_fn(generator, window, bands),
                       input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_EXAMPLES)])
  tmp = tempfile.mkdtemp(prefix="cloudfill_card_")
  card_path = os.path.join(tmp, contract.ASSET_NAME)
  with open(card_path, "w") as f:
    f.write(card.to_json())
  # Track the card as a real SavedModel asset (copied to assets/).
  archive.cloudfill_card = tf.saved_model.Asset(card_path)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  archive.write_out(out_dir, verbose=False)
  asset = os.path.join(out_dir, "assets", contract.ASSET_NAME)
  if not os.path.exists(asset):
    os.makedirs(os.path.dirname(asset), exist_ok=True)
    shutil.copy(card_path, asset)
  shutil.rmtree(tmp, ignore_errors=True)
  return out_dir


def read_card(saved_model_dir: str) -> ModelCard:
  """Reads ``assets/cloudfill.json`` of an exported model."""
  with open(os.path.join(saved_model_dir, "assets", contract.ASSET_NAME)) as f:
    return ModelCard.from_json(f.read())


def export_tflite(
    generator: keras.Model,
    card: ModelCard,
    out_dir: str,
    representative: Optional[Iterable] = None,
    kinds: Sequence[str] = ("fp16", "dynamic", "int8")) -> dict[str, str]:
  """Converts the generator to TFLite at a fixed ``[1, W, W, C]`` shape.

  Args:
    generator: A built generator.
    card: Its model card (window and bands).
    out_dir: Where ``cloudfill_fp16.tflite`` and ``cloudfill_int8.tflite``
      go.
    representative: Iterable of dicts of the five inputs, each ``[1, W, W, *]``
      (INT8 calibration); no INT8 file without it.
    kinds: Which of ``fp16``, ``dynamic`` and ``int8`` to write.

  Returns:
    ``{"fp16": path, "dynamic": path, "int8": path}`` for the files written
    (``dynamic``: int8 weights, float activations).
  """
  w, c = int(card.window), int(card.bands)
  # Through a fixed-shape SavedModel: converting the Keras 3 concrete
  # function directly leaves READ_VARIABLE ops that INT8 calibration fails on.
  tmp = tempfile.mkdtemp(prefix="cloudfill_tflite_")
  archive = keras.export.ExportArchive()
  archive.add_endpoint(name="serving_default", fn=_restore_fn(generator), input_signature=_restore_specs(c, 1, w))
  archive.write_out(tmp, verbose=False)

  def converter():
    return tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])

  os.makedirs(out_dir, exist_ok=True)
  written = {}

  # float16 weights; dynamic range: int8 weights (a quarter of float32's size),
  # float activations (full-integer INT8 loses dB as the learned correction
  # grows; this does not).
  for kind, name, types in (("fp16", "cloudfill_fp16.tflite", [tf.float16]), ("dynamic", TFLITE_ASSET, None)):
    if kind in kinds:
      conv = converter()
      conv.optimizations = [tf.lite.Optimize.DEFAULT]
      if types:
        conv.target_spec.supported_types = types
      written[kind] = os.path.join(out_dir, name)
      with open(written[kind], "wb") as f:
        f.write(conv.convert())

  if representative is not None and "int8" in kinds:
    reps = list(representative)

    def rep_gen():
      for inputs in reps:
        yield {k: np.asarray(inputs[k], np.float32) for k in V2_INPUTS}

    conv = converter()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep_gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # Float in/out (0…1 images, 0/1 masks); every op inside is INT8.
    path = os.path.join(out_dir, "cloudfill_int8.tflite")
    with open(path, "wb") as f:
      f.write(conv.convert())
    written["int8"] = path
  shutil.rmtree(tmp, ignore_errors=True)
  return written


def load_generator(config_path: str, weights_path: str) -> keras.Model:
  """Rebuilds a generator from ``generator.json`` and a weights file."""
  with open(config_path) as f:
    cfg = json.load(f)
  cfg.pop("name", None)
  g = build_generator(**cfg)
  load_weights(g, weights_path)
  return g


def weights_sha256(generator: keras.Model) -> str:
  """SHA-256 (hex) of a model's weights: every array's dtype, shape and bytes, in order."""
  h = hashlib.sha256()
  for w in generator.get_weights():
    a = np.ascontiguousarray(w)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def check_out(out: str, overwrite: bool) -> Optional[str]:
  """Why ``out`` may not be written (a file; a model or a non-empty folder
  without ``--overwrite``), or None."""
  if os.path.isfile(out):
    return f"--out {out} is a file"
  if os.path.isdir(out) and os.listdir(out) and not overwrite:
    what = "a model" if os.path.exists(os.path.join(out, "saved_model.pb")) else "a non-empty folder"
    return f"--out {out} already holds {what}; pass --overwrite to replace it"
  return None


def representative_inputs(data: str, bands: int, window: int, n: int, seed: int = 1234) -> list[dict[str, np.ndarray]]:
  """``n`` training-area windows with the five inputs, each ``[1, W, W, *]``
  (INT8 calibration)."""
  s = sampler(data, bands, window, 2 * window, "train")
  return [{k: v[None] for k, v in s.sample(seed, i).items()} for i in range(n)]


def _parse(argv: Optional[Sequence[str]]):
  p = argparse.ArgumentParser(prog="cloudfill export",
                              description="Export a trained generator as a cloudfill SavedModel "
                              "(and TFLite float16 / INT8).",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--run", help="training run dir (uses generator.json and "
                 "generator.weights.h5 there)")
  p.add_argument("--config", help="generator.json (overrides --run)")
  p.add_argument("--weights", help="weights file, e.g. trained under JAX (overrides --run)")
  p.add_argument("--untrained", action="store_true", help="export a freshly initialised generator")
  p.add_argument("--out", required=True, help="SavedModel directory to write")
  p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
  p.add_argument("--name", default="cloudfill-ctx")
  p.add_argument("--version",
                 default=None,
                 help="model version (default: w + the first 12 hex digits of the weights' SHA-256, "
                 "which the card also keeps whole as weights_sha256)")
  p.add_argument("--bands", type=int, default=3)
  p.add_argument("--window", type=int, default=ModelCard.window)
  p.add_argument("--overlap", type=int, default=ModelCard.overlap)
  p.add_argument("--metrics", help="JSON file merged into card.metrics")
  p.add_argument("--trained-on", nargs="*", default=None, help="provenance; default: the run's trained_on.json")
  p.add_argument("--tflite", metavar="DIR", help="also write float16, dynamic-range and INT8 TFLite models here")
  p.add_argument("--tflite-asset",
                 action="store_true",
                 help="also write the dynamic-range TFLite model into OUT/assets (what --backend tflite runs)")
  p.add_argument("--data",
                 default=default_data_dir(),
                 help="training data for the INT8 representative set (default: "
                 "$CLOUDFILL_SHARED_DATA or ../shared/data, here %(default)s)")
  p.add_argument("--rep-samples", type=int, default=32)
  return p.parse_args(argv)


def _summary(metrics: dict) -> dict:
  """The figures of a run's metrics.json worth keeping in the card."""
  return {k: v for k, v in metrics.items() if k != "history"}


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``cloudfill export`` entry point."""
  args = _parse(argv)
  if keras.backend.backend() != "tensorflow":
    print("cloudfill export: runs under the TensorFlow backend (KERAS_BACKEND=tensorflow)", file=sys.stderr)
    return 2
  refused = check_out(args.out, args.overwrite)
  if refused:
    print(f"cloudfill export: {refused}", file=sys.stderr)
    return 2
  trained_on, metrics, bands = [], {}, args.bands
  if args.untrained:
    gen = build_generator(bands=bands)
  else:
    if not (args.run or (args.config and args.weights)):
      print("cloudfill export: give --run DIR, or --config and --weights, or --untrained", file=sys.stderr)
      return 2
    cfg = args.config or os.path.join(args.run, "generator.json")
    wts = args.weights or os.path.join(args.run, "generator.weights.h5")
    gen = load_generator(cfg, wts)
    bands = gen.bands
    if args.run:
      p = os.path.join(args.run, "trained_on.json")
      if os.path.exists(p):
        with open(p) as f:
          trained_on = json.load(f)
      p = os.path.join(args.run, "metrics.json")
      if os.path.exists(p):
        with open(p) as f:
          metrics = _summary(json.load(f))
  if args.trained_on is not None:
    trained_on = args.trained_on
  if args.metrics:
    with open(args.metrics) as f:
      metrics.update(json.load(f))
  digest = weights_sha256(gen)
  metrics["weights_sha256"] = digest
  card = ModelCard(name=args.name,
                   version=args.version or f"w{digest[:12]}",
                   bands=bands,
                   window=args.window,
                   overlap=args.overlap,
                   pad_multiple=gen.multiple,
                   trained_on=tuple(trained_on),
                   metrics=metrics,
                   inputs=V2_INPUTS,
                   guided=True,
                   context="push_pull",
                   weights_sha256=digest)
  export_saved_model(gen, card, args.out)
  print(f"SavedModel written to {args.out} (version {card.version})")
  if args.tflite_asset:
    path = export_tflite(gen, card, os.path.join(args.out, "assets"), kinds=("dynamic",))["dynamic"]
    print(f"TFLite dynamic range: {path}")
  if args.tflite:
    reps = representative_inputs(args.data, bands, args.window, args.rep_samples)
    for kind, path in export_tflite(gen, card, args.tflite, reps).items():
      print(f"TFLite {kind}: {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
