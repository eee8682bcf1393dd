"""Stage 3: cut tiles of any size into model-sized, overlapping windows.

Windows that hold no missing pixel skip the model. Tiles smaller than a window
are padded by reflection. Each window's pixels are scaled to 0…1 with the
tile's value range, which is what the model's ``restore`` signature takes.

The geometry (window starts, feathering, padding, :class:`WindowSpec`,
:func:`cut_rows`) is :mod:`transforms.tiling`'s and the 0…1 scaling
:mod:`transforms.scaling`'s; both are importable from here as before.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator, Optional

import apache_beam as beam
import numpy as np

from transforms import context as ctx
from transforms import regression
from transforms import counters, preview, scene_context
from transforms.guide import GuideSpec
from transforms.pooled import TIMESTAMP, WINDOW, PooledDoFn, pool_threads, small_tile
from transforms.records import Tile, Window, WindowFailure
from transforms.scaling import DTYPE_RANGES, from_unit, to_unit, value_range  # noqa: F401  (re-exported)
from transforms.scenes import is_scene
from transforms.tiling import WindowSpec, cut_rows, feather, pad_reflect, positions  # noqa: F401  (re-exported)

# CutWindows' other outputs: ``(tile_key, WindowFailure)`` when cutting fails, and
# ``(tile_key, Tile)`` for the in-memory tiles that are not carried by their only window.
FAILED_WINDOWS = "failed"
TILES = "tiles"


def tile_context(tile: Tile, spec: WindowSpec) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """The classical fill of a whole in-memory tile, on the 0…1 scale.

  Returns:
    ``(context [H, W, C], mapped_guide [H, W, C] or None)``: the push-pull
    fill of the tile's known ground (:func:`regression.guided_fill` when the
    tile carries a guide), and the guide mapped to its radiometry.
  """
  if tile.context is not None and tile.guide is None:
    return tile.context, None  # Prepared with its neighbours: nothing to compute.
  lo, hi = value_range(tile.profile["dtype"], spec.value_range)
  unit = to_unit(tile.image, lo, hi)
  known = tile.known().astype(np.float32)
  fill = tile.context if tile.context is not None else ctx.push_pull(unit, known)
  if tile.guide is None:
    return fill, None
  g = regression.guided_fill(unit, known, tile.guide, tile.guide_valid, unguided=fill)
  return g.fill, g.mapped


def cut(tile: Tile,
        spec: WindowSpec,
        fill: Optional[np.ndarray] = None,
        mapped: Optional[np.ndarray] = None) -> Iterator[Window]:
  """Yields the windows of an in-memory ``tile`` that hold a missing pixel,
  each with its crop of the tile's context ``fill`` (and guide) when given."""
  context = None
  if fill is not None:
    size = spec.size
    gmask = None if tile.guide_valid is None else 1.0 - np.asarray(tile.guide_valid, np.float32)

    def context(y, x, _img, _known):
      out = {"context": pad_reflect(fill[y:y + size, x:x + size], size)}
      if mapped is not None:
        out["guide"] = pad_reflect(mapped[y:y + size, x:x + size], size)
        out["guide_mask"] = pad_reflect(gmask[y:y + size, x:x + size], size)[:, :, None]
      return out

  return cut_rows(tile.key,
                  tile.mask,
                  tile.profile["dtype"],
                  lambda y0, y1: tile.image[y0:y1],
                  spec,
                  known=tile.known(),
                  context=context)


def keyed_for_composite(tile: Tile) -> tuple[str, Tile]:
  """``(key, tile)`` without the guide and context the composite does not need
  (a new record: the input is not modified)."""
  if tile.guide is not None or tile.context is not None:
    tile = dataclasses.replace(tile, guide=None, context=None)
  return tile.key, tile


class CutWindows(PooledDoFn):
  """:class:`Tile` -> :class:`Window` for every window with holes.

  Each in-memory tile's context (:func:`tile_context`) is computed once and
  each window carries its crop; its quicklook goes to ``DIR/preview/`` first.
  A tile cut into exactly one window sends itself along in it
  (:attr:`Window.tile`); any other tile goes to the ``tiles`` output, keyed,
  to be joined with its windows' results (:mod:`transforms.tile_path`).
  Large scenes (:class:`transforms.scenes.SceneRef`) are cut by
  :func:`transforms.scene_context.cut_scene`, one row of windows at a time.
  A tile of one window is cut on the DoFn's thread pool
  (:class:`transforms.pooled.PooledDoFn`); larger tiles and scenes, whose
  windows are yielded one at a time, here.
  """

  STEP = "cut"

  def __init__(self, spec: WindowSpec, output_dir: str, preview: bool = True, guide_spec=None, threads=None):
    super().__init__(threads)
    self._spec = spec
    self._output = output_dir
    self._preview = preview
    self._guide = guide_spec

  def process(self, tile, window=WINDOW, timestamp=TIMESTAMP) -> Iterator[Window]:
    one_window = not is_scene(tile) and max(tile.mask.shape) <= self._spec.size
    yield from self.pooled(self._cut, (tile,), window, timestamp, on_pool=one_window and small_tile(tile))

  def _cut(self, tile) -> Iterator[Window]:
    if is_scene(tile):
      windows = scene_context.cut_scene(tile, self._spec, self._output, self._guide, self._preview and
                                        bool(self._output))
    else:
      fill, mapped = tile_context(tile, self._spec)
      if self._preview and self._output:
        preview.write_tile_preview(self._output, tile, fill, self._spec.value_range)
      windows = cut(tile, self._spec, fill, mapped)
    if getattr(tile, "layout", None) is not None and tile.layout.method == "model":
      windows = itertools.chain(windows, group_windows(tile, self._spec, self._output))
    if is_scene(tile):
      yield from _each_window(tile, windows)
    else:
      yield from self._tile_windows(tile, windows)

  @staticmethod
  def _tile_windows(tile: Tile, windows: Iterator[Window]):
    """An in-memory tile's windows: the tile inside its only one, or the tile to
    join and its windows (still one at a time: only two are looked at ahead)."""
    it = iter(windows)
    try:
      ahead = list(itertools.islice(it, 2))
    except Exception as e:  # pylint: disable=broad-except
      yield beam.pvalue.TaggedOutput(TILES, keyed_for_composite(tile))
      yield _cut_failure(tile, e)
      return
    if len(ahead) == 1:
      counters.inc("windows")
      yield dataclasses.replace(ahead[0], tile=keyed_for_composite(tile)[1])
      return
    yield beam.pvalue.TaggedOutput(TILES, keyed_for_composite(tile))
    yield from _each_window(tile, itertools.chain(ahead, it))


def _each_window(tile, windows: Iterator[Window]):
  """``windows`` one at a time, counted; if cutting them fails on the way (e.g.
  a scene's file changed since it was decoded), that tile or scene fails with
  a :class:`WindowFailure` (``failed`` output), not the run."""
  try:
    for win in windows:
      counters.inc("windows")
      yield win
  except Exception as e:  # pylint: disable=broad-except
    yield _cut_failure(tile, e)


def _cut_failure(tile, e: Exception):
  return beam.pvalue.TaggedOutput(
      FAILED_WINDOWS,
      (tile.key, WindowFailure(y=-1, x=-1, reason=f"{type(e).__name__}: {e}", scene=is_scene(tile), stage="window")))


@dataclasses.dataclass
class WindowTiles(beam.PTransform):
  """Prepared tiles and scenes -> outputs ``windows`` (:class:`Window`, to infer),
  ``tiles`` (``(key, Tile)``: in-memory tiles of more or fewer than one window,
  to join with their windows' results) and ``failed`` (``(key,
  WindowFailure)`` where cutting failed).

  Tiles and large scenes share this one step so that windows stream straight
  into ``RunInference`` (a Flatten of two window streams could be materialised
  by the DirectRunner, holding every window in memory).

  Attributes:
    spec: How windows are cut.
    output_dir: The run's output folder (quicklooks, scene spills).
    preview: Write the quicklooks to ``DIR/preview/``.
    guide_spec: Where guides are (a scene's guide is read window by window).
  """

  spec: WindowSpec
  output_dir: str
  preview: bool = True
  guide_spec: Optional[GuideSpec] = None

  def expand(self, tiles):
    return tiles | "Cut" >> beam.ParDo(
        CutWindows(self.spec, self.output_dir, self.preview, self.guide_spec, pool_threads(
            tiles.pipeline))).with_outputs(FAILED_WINDOWS, TILES, main="windows")


def group_windows(item, spec: WindowSpec, output_dir: str) -> Iterator[Window]:
  """The windows of every band group of a tile's or scene's extra bands
  (``--extra-bands model``, :meth:`transforms.bands.BandLayout.groups`),
  ``Window.group`` set; unguided, and each group with its own context (its
  own push-pull, or for a scene its own low-resolution pass)."""
  layout = item.layout
  if layout is None or layout.method != "model" or not layout.extra:
    return
  for g, bands in enumerate(layout.groups(), start=1):
    if isinstance(item, Tile):
      part = dataclasses.replace(item,
                                 image=np.ascontiguousarray(item.full[:, :, list(bands)]),
                                 guide=None,
                                 guide_valid=None,
                                 context=None)
      fill, _ = tile_context(part, spec)
      windows = cut(part, spec, fill)
    else:
      windows = scene_context.cut_scene(dataclasses.replace(item, band_index=tuple(bands), guide=None),
                                        spec,
                                        output_dir,
                                        None,
                                        write_preview=False)
    for win in windows:
      yield dataclasses.replace(win, group=g)
