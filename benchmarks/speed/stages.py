"""Where the time goes: each pipeline step's own cost per tile, in-process,
beside the model's time per tile; and candidate fixes timed as steps."""

from __future__ import annotations

import collections
import dataclasses
import os
import statistics
import time
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.speed import base
from model_loader.tfx import serialize_example
from transforms import preview, raster_io
from model_loader import native, tfx
from transforms.composite import composite, window_result
from transforms.decode import DecodeSpec, decode_pair
from transforms.masks import MaskSpec
from transforms.match import mask_path_for
from transforms.atomic_write import write_bytes_atomic
from transforms.raster_io import encode_raster
from transforms.records import TilePair
from transforms.window import WindowSpec, cut, tile_context
from transforms.write import WriteSpec, measure
from transforms.records import RestoredTile

# Timed beside the pipeline's own steps, to size what each proposed fix would save.


def serialize_example_wire(image: np.ndarray, mask: np.ndarray) -> bytes:
  """The tfx backend's wire-format Example (now what the pipeline uses)."""
  return serialize_example(image, mask)


def encode_tiff_with(image: np.ndarray, profile: dict[str, Any], **options) -> bytes:
  """``transforms.raster_io``'s GeoTIFF encoding with other creation options."""
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  h, w, c = image.shape
  kwargs = raster_io.tiff_write_kwargs(profile, h, w, c)
  kwargs.update(options)
  with MemoryFile() as mem:
    with mem.open(**kwargs) as dst:
      dst.write(np.moveaxis(image, -1, 0))
    return mem.read()


# --------------------------------------------------------------------------- stage costs


def bench_stages(tiles, images_glob: str, masks_tpl: str, model_dir: str, batch_size: int, work: str,
                 min_seconds: float) -> dict[str, Any]:
  """Each pipeline step's cost per tile (ms, median over tiles), in-process."""
  # pylint: disable=import-outside-toplevel
  import apache_beam as beam
  import tensorflow as tf

  card = base.card(model_dir)
  model = native.LoadedModel(model_dir)
  coder = beam.coders.registry.get_coder(object)
  spec = DecodeSpec(mask=MaskSpec(source="file"), model_bands=card.bands)
  wspec = WindowSpec(size=card.window, overlap=card.overlap, value_range=base.VALUE_RANGE)
  out_dir = os.path.join(work, "stages_out")
  steps: dict[str, list[float]] = collections.defaultdict(list)
  folder = os.path.dirname(images_glob)
  sample = tiles[:min(len(tiles), 24)]
  for t in sample:
    path = os.path.join(folder, t["name"] + ".tif")
    pair = TilePair(path, t["name"], mask_path_for(path, masks_tpl))

    def timed(name, fn, *a):
      t0 = time.perf_counter()
      r = fn(*a)
      steps[name].append(1000 * (time.perf_counter() - t0))
      return r

    tile = timed("decode", decode_pair, pair, spec)
    fill, mapped = timed("tile_context", tile_context, tile, wspec)
    wins = timed("cut", lambda: list(cut(tile, wspec, fill, mapped)))
    timed("preview", preview.write_tile_preview, out_dir, tile, fill, base.VALUE_RANGE)
    feed = base.stacked(wins, ("image", "mask") + model.input_names)
    restored = model(feed.pop("image"), feed.pop("mask"), **feed)
    results = timed(
        "sparsify",
        lambda: [window_result(w, r, card.overlap, "context" in model.input_names) for w, r in zip(wins, restored)])
    wins = [dataclasses.replace(w, restored=r) for w, r in zip(wins, restored)]
    timed("tfx_example_serialize", lambda: [tfx.to_example(w.image, w.mask).SerializeToString() for w in wins])
    wire = timed("fix_tfx_example_wire_format", lambda: [serialize_example_wire(w.image, w.mask) for w in wins])
    # Same message (byte order of map entries may differ: protobuf leaves it open).
    if tf.train.Example.FromString(wire[0]) != tfx.to_example(wins[0].image, wins[0].mask):
      steps["fix_tfx_example_wire_format_NOT_EQUAL"].append(0.0)
    timed("tfx_response_to_array", lambda: [tf.make_ndarray(tf.make_tensor_proto(w.restored)) for w in wins])
    timed(
        "coder_tile_and_results_at_join", lambda: (coder.decode(coder.encode(
            (tile.key, tile))), [coder.decode(coder.encode((tile.key, r))) for r in results]))
    filled = timed("composite", composite, tile.image, tile.mask, results, base.VALUE_RANGE, 0)
    out_path = os.path.join(out_dir, t["name"] + ".tif")
    timed(
        "encode_and_write", lambda: write_bytes_atomic(
            out_path, encode_raster(filled, tile.profile, {"CLOUDFILL_MODEL_VERSION": card.version})))
    if hasattr(raster_io, "tiff_write_kwargs"):
      timed("fix_encode_deflate_zlevel1", lambda: encode_tiff_with(filled, tile.profile, zlevel=1))
      timed("fix_encode_zstd_level1", lambda: encode_tiff_with(filled, tile.profile, compress="zstd", zstd_level=1))
      timed("encode_only_default", lambda: encode_tiff_with(filled, tile.profile))
    item = RestoredTile(tile=tile, restored=filled, windows=len(wins))
    timed("measure", measure, item, WriteSpec(output_dir=out_dir, model_version=card.version))
    timed("measure_with_evaluate", measure, item,
          WriteSpec(output_dir=out_dir, model_version=card.version, evaluate=True))
  # The model's own time per tile at the pipeline's batch size, on these tiles' windows.
  wins = base.windows(sample, card.window, card.overlap)
  feed = base.stacked(wins, ("image", "mask") + model.input_names)
  ims, mss = feed.pop("image"), feed.pop("mask")
  model(ims[:batch_size], mss[:batch_size], **{k: v[:batch_size] for k, v in feed.items()})

  def all_batches():
    for i in range(0, len(wins), batch_size):
      model(ims[i:i + batch_size], mss[i:i + batch_size], **{k: v[i:i + batch_size] for k, v in feed.items()})

  sec, _ = base.timeit(all_batches, min_seconds=min_seconds, min_runs=2)
  model_ms = 1000 * sec / len(sample)
  med = {k: statistics.median(v) for k, v in steps.items()}
  native_path = ("decode", "tile_context", "cut", "preview", "sparsify", "coder_tile_and_results_at_join", "composite",
                 "encode_and_write", "measure")
  overhead = sum(med[k] for k in native_path)
  tfx_extra = med["tfx_example_serialize"] + med["tfx_response_to_array"]
  out = {
      "tiles": len(sample),
      "ms_per_tile": med,
      "model_ms_per_tile": model_ms,
      "native_overhead_ms_per_tile": overhead,
      "predicted_native_ratio_serial": model_ms / (model_ms + overhead),
      "tfx_extra_ms_per_tile": tfx_extra,
      "predicted_tfx_ratio_serial": model_ms / (model_ms + overhead + tfx_extra)
  }
  common.log(f"  model {model_ms:.1f} ms/tile (batch {batch_size}); per-tile steps (ms, median):")
  for k, v in sorted(med.items(), key=lambda kv: -kv[1]):
    common.log(f"    {k:32s} {v:8.2f}  ({100 * v / model_ms:5.1f} % of the model's time)")
  common.log(f"  native path overhead {overhead:.1f} ms/tile -> serial ceiling "
             f"{100 * out['predicted_native_ratio_serial']:.0f} % of the raw loop")
  if "fix_encode_zstd_level1" in med:
    saved = med["encode_only_default"] - med["fix_encode_zstd_level1"]
    fixed = overhead - saved
    out["native_overhead_with_zstd1_ms_per_tile"] = fixed
    out["predicted_native_ratio_serial_with_zstd1"] = model_ms / (model_ms + fixed)
    tfx_fixed = med["fix_tfx_example_wire_format"] + med["tfx_response_to_array"]
    out["predicted_tfx_ratio_serial_with_wire_format_and_zstd1"] = model_ms / (model_ms + fixed + tfx_fixed)
    common.log(f"  with zstd level 1 GeoTIFFs: overhead {fixed:.1f} ms/tile -> ceiling "
               f"{100 * out['predicted_native_ratio_serial_with_zstd1']:.0f} %; tfx with wire-format "
               f"Examples too: {100 * out['predicted_tfx_ratio_serial_with_wire_format_and_zstd1']:.0f} % "
               f"(now {100 * out['predicted_tfx_ratio_serial']:.0f} %)")
  return out
