"""One tile restored in memory, with the pipeline's own stages.

``cloudfill serve`` restores an uploaded image with :func:`restore_array`; it
is built from the very functions the Beam pipeline chains (window
:func:`transforms.window.cut` -> the model's ``restore`` signature ->
:func:`transforms.composite.sparsify` -> :func:`transforms.composite.composite`),
so a tile restored here and by ``cloudfill run`` goes through one
implementation: the same footprint (:func:`transforms.prepare.prepare_tile`),
the same tile-level context (:func:`transforms.window.tile_context`) and the
same finishing (:func:`transforms.composite.finish_tile`). Nothing here knows
about HTTP or Beam runners.

``predict`` is any callable with the ``restore`` signature on numpy batches,
e.g. :class:`model_loader.native.LoadedModel` or the server's micro-batcher.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import numpy as np

from transforms.composite import composite, finish_tile, restore_extra_bands, window_result
from transforms.prepare import PrepareSpec, prepare_tile
from transforms.records import Tile, TilePair
from transforms.window import WindowSpec, cut, group_windows, tile_context, value_range

# ``predict(images [N, S, S, C] float32 0…1, masks [N, S, S, 1] float32 1=missing,
# context=…, guide=…, guide_mask=… [N, S, S, *]) -> restored [N, S, S, C] float32 0…1``
# (:class:`model_loader.native.LoadedModel` passes the extra inputs its model takes).
Predict = Callable[..., np.ndarray]


@dataclasses.dataclass(frozen=True)
class EngineSpec:
  """How a tile is cut and batched.

  Attributes:
    window: The windows (the model card's window and overlap, the profile's
      value range).
    batch_size: Windows per ``predict`` call, as ``--max-batch-size`` in the
      pipeline (same batches, same floating-point sums, same bytes).
    takes_context: The model takes the ``context`` input (its card says so);
      a context-blind model's output is faded into the context as in the pipeline.
  """

  window: WindowSpec = WindowSpec()
  batch_size: int = 16
  takes_context: bool = True

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError("batch_size must be >= 1")


def restore_array(image: np.ndarray,
                  mask: np.ndarray,
                  profile: dict[str, Any],
                  predict: Predict,
                  spec: EngineSpec,
                  full: Optional[np.ndarray] = None,
                  layout: Any = None) -> tuple[np.ndarray, int]:
  """The restored tile and how many windows went through the model.

  Args:
    image: ``[H, W, C]`` in its dtype (uint8, uint16, int16 or float32); not
      modified.
    mask: ``[H, W]`` bool, True = missing.
    profile: The tile's profile (``dtype``, ``nodata``; see
      :class:`transforms.records.Tile`).
    predict: The model (see :data:`Predict`).
    spec: Windows and batching.
    full, layout: Every band of the input and its
      :class:`transforms.bands.BandLayout` (``Tile.full``, ``Tile.layout``),
      when ``image`` holds only the model's bands: every band comes out.

  Returns:
    ``([H, W, C]`` in the input dtype (``[H, W, count]`` with ``full``),
    windows): known pixels bit-identical, missing ones filled.

  Raises:
    ValueError: a window the model left uncovered, or a wrong output shape.
  """
  tile = Tile(pair=TilePair(image_path="<memory>", stem="tile", mask_path=None),
              image=image,
              mask=mask,
              profile=profile,
              full=full,
              layout=layout)
  tile = prepare_tile(tile, PrepareSpec(value_range=spec.window.value_range))
  if not tile.known().any():
    raise ValueError("no known pixel inside the footprint")
  fill, mapped = tile_context(tile, spec.window)
  windows = list(cut(tile, spec.window, fill, mapped))
  if layout is not None:  # --extra-bands model: the band groups' windows too.
    windows += list(group_windows(tile, spec.window, ""))
  results = []
  for i in range(0, len(windows), spec.batch_size):
    batch = windows[i:i + spec.batch_size]
    inputs = [w.model_inputs() for w in batch]
    stacked = {k: np.stack([x[k] for x in inputs]) for k in inputs[0]}
    images, masks = stacked.pop("image"), stacked.pop("mask")
    restored = np.asarray(predict(images, masks, **stacked))
    if restored.shape != images.shape:
      raise ValueError(f"the model returned shape {restored.shape} for input {images.shape}")
    for w, r in zip(batch, restored):
      results.append(window_result(w, r, spec.window.overlap, spec.takes_context))
  out = composite(tile.image, tile.mask, [r for r in results if not r.group], spec.window.value_range,
                  profile.get("nodata"))
  if layout is not None:
    out = restore_extra_bands(tile, out, value_range(profile["dtype"], spec.window.value_range), results)
  out, _, _ = finish_tile(tile, out)
  return out, len(windows)
