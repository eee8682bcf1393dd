"""No DoFn modifies its input element (Beam forbids it: a runner may hand the
same object to several consumers, or reuse it after a retry).

Each stage's ``process`` (and the native handler's ``run_inference``) runs on
real decoded sample tiles with a real SavedModel; every input is snapshotted
(pickled) before and compared after, and its arrays are made read-only so an
in-place write raises instead of passing silently.
"""

from __future__ import annotations

import glob
import os
import pickle

import apache_beam as beam
import numpy as np
import pytest

from model_loader import native
from transforms.composite import CompositeTiles
from transforms.decode import DecodeSpec, DecodeTiles
from transforms.infer import _FromPrediction
from transforms.masks import MaskSpec
from transforms.match import mask_path_for
from transforms.prepare import PrepareSpec, PrepareTiles
import dataclasses

from transforms.records import RestoredTile, Solo, Tile, TilePair, TileResult, Window, WindowResult
from transforms.tile_path import as_joined
from transforms.window import TILES, CutWindows, WindowSpec
from transforms.write import WriteSpec, WriteTiles

from tests.conftest import SAMPLE


def _frozen(obj):
  """``obj`` with every numpy array it holds (one level of dataclass fields,
  lists, dicts) made read-only; returns ``obj``."""
  seen = []
  values = list(vars(obj).values()) if hasattr(obj, "__dict__") else [obj]
  while values:
    v = values.pop()
    if isinstance(v, np.ndarray):
      v.setflags(write=False)
    elif isinstance(v, (list, tuple)):
      values.extend(v)
    elif isinstance(v, dict):
      values.extend(v.values())
    elif hasattr(v, "__dataclass_fields__") and id(v) not in seen:
      seen.append(id(v))
      values.extend(vars(v).values())
  return obj


def _run(fn, element, *args):
  """``list(fn(element, *args))``, asserting that ``element`` is unchanged."""
  before = pickle.dumps(element)
  out = list(fn(element, *args))
  assert pickle.dumps(element) == before, f"{fn.__qualname__} modified its input"
  return out


def _main(outputs):
  """The outputs that are not tagged (dead letters etc.)."""
  tagged = [o for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
  assert not tagged, [o.value for o in tagged]
  return outputs


@pytest.mark.parametrize("stem,solo", [("LC08_224078_20200518_r300_c200", False),
                                       ("LC08_224078_20200518_r500_c1400", False),
                                       ("LC08_224078_20200518_r300_c200", True)])
def test_no_stage_modifies_its_input(tmp_path, context_model, stem, solo):
  """``solo``: the tile cropped to one window, which carries it through inference (no join)."""
  from model_loader import locate
  card = locate.read_card(context_model)
  path = os.path.join(SAMPLE, "images", stem + ".tif")
  assert os.path.exists(path), glob.glob(os.path.join(SAMPLE, "images", "*"))
  pair = TilePair(path, stem, mask_path_for(path, os.path.join(SAMPLE, "masks", "{stem}.png")))
  out_dir = str(tmp_path)

  decode = DecodeTiles(DecodeSpec(mask=MaskSpec(source="file"), model_bands=card.bands))
  (tile,) = _main(_run(decode.process, pair))
  assert isinstance(tile, Tile) and "decode" in tile.timings

  if solo:
    s = card.window
    tile = dataclasses.replace(tile, image=tile.image[:s, :s].copy(), mask=tile.mask[:s, :s].copy())
    assert tile.mask.any()
  (tile,) = _main(_run(PrepareTiles(PrepareSpec()).process, _frozen(tile), ()))
  cut = CutWindows(WindowSpec(size=card.window, overlap=card.overlap), out_dir)
  outputs = _run(cut.process, _frozen(tile))
  to_join = [o for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
  windows = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
  assert windows and all(isinstance(w, Window) for w in windows)
  if solo:  # The tile travels inside its only window, without its guide and context.
    assert not to_join and len(windows) == 1 and windows[0].tile.key == tile.key
    assert windows[0].tile.context is None
  else:  # The tile goes to the join, keyed; no window carries it.
    assert [(o.tag, o.value[0]) for o in to_join] == [(TILES, tile.key)] and to_join[0].value[1].context is None
    assert len(windows) > 1 and all(w.tile is None for w in windows)

  handler = native.NativeModelHandler(context_model)
  model = handler.load_model()
  batch = [_frozen(w) for w in windows[:5]]
  before = [pickle.dumps(w) for w in batch]
  predictions = list(handler.run_inference(batch, model))
  assert [pickle.dumps(w) for w in batch] == before, "run_inference modified its windows"
  # Each prediction's window carries its share of the batch's time (on a copy).
  assert all(p.example.seconds > w.seconds for p, w in zip(predictions, batch))
  if windows[5:]:
    predictions += list(handler.run_inference([_frozen(w) for w in windows[5:]], model))

  results = []
  for p in predictions:
    (kv,) = _main(_run(_FromPrediction(card.overlap, True).process, p))
    results.append(kv)
  if solo:
    ((key, carried),) = results
    assert isinstance(carried, Solo) and isinstance(carried.result, WindowResult)
    joined = as_joined((key, _frozen(carried)))
    assert joined[1]["tile"][0] is carried.tile
  else:
    assert all(isinstance(kv[1], WindowResult) for kv in results)
    joined = (tile.key, {"tile": [tile], "windows": [_frozen(kv[1]) for kv in results]})
  (restored,) = _main(_run(CompositeTiles().process, joined))
  assert isinstance(restored, RestoredTile)
  assert set(restored.tile.timings) >= {"decode", "window_infer", "composite"}
  assert "composite" not in tile.timings  # The joined tile kept its own timings.

  spec = WriteSpec(output_dir=out_dir, model_version=card.version, window=(card.window, card.overlap))
  (result,) = _main(_run(WriteTiles(spec).process, _frozen(restored)))
  assert isinstance(result, TileResult) and os.path.exists(result.output)
  assert set(result.metrics["seconds"]) >= {"decode", "composite", "write"}
  assert "write" not in restored.tile.timings
