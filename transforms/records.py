"""The records that flow between the pipeline's stages.

Read top to bottom, the data path is::

  TilePair (match) -> Tile (decode) -> Window (window) -> Window with
  ``restored`` (infer) -> TileResult (composite + write) -> metrics/summary

and any stage may instead emit a :class:`DeadLetter`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import numpy as np

# Outcomes a tile can end with; every matched input ends with exactly one.
RESTORED = "restored"
SKIPPED = "skipped"
FAILED = "failed"
OUTCOMES = (RESTORED, SKIPPED, FAILED)

# The tagged output every stage sends its :class:`DeadLetter` records to.
DEAD = "dead"


@dataclasses.dataclass(frozen=True)
class TilePair:
  """An image and where its mask comes from.

  Attributes:
    image_path: The image's path or URI.
    stem: The image's file name without extension; names the outputs.
    mask_path: The mask's path or URI, or None when the mask comes from the
      image itself (no-data value or a probability band).
    mtime: The image's last-modified time (seconds since the epoch), or 0.
    size_bytes: The image's size in bytes.
  """

  image_path: str
  stem: str
  mask_path: Optional[str]
  mtime: float = 0.0
  size_bytes: int = 0

  @property
  def name(self) -> str:
    """The image's file name: names its output and keys its tile (unique in a run)."""
    return self.image_path.rstrip("/").rsplit("/", 1)[-1]


@dataclasses.dataclass
class Tile:
  """A decoded tile: its pixels, its mask, and what is needed to write it back.

  Attributes:
    pair: Where it came from.
    image: ``[H, W, C]`` array in the input dtype.
    mask: ``[H, W]`` bool, True = missing.
    profile: Format details needed to write an identical-looking output:
      ``driver`` ("GTiff", "PNG", "JPEG"), ``dtype``, ``nodata``, ``crs``
      (WKT or None), ``transform`` (6 GDAL numbers or None), ``descriptions``,
      ``ext`` (the input's extension, e.g. ".tif").
    timings: Seconds spent per stage so far.
    nodata: ``[H, W]`` bool, True = outside the valid footprint (declared
      no-data, ``--nodata``, NaN): never read as known, never filled, written
      back unchanged. None = every pixel is inside. Set by
      :mod:`transforms.footprint`; ``mask`` then excludes these pixels.
    unfilled: ``[H, W]`` bool, hole pixels farther than
      ``--max-fill-distance`` from known ground: not filled (no-data in the
      output, or the input unchanged when there is no no-data value); also
      excluded from ``mask``. None = none.
    guide: ``[H, W, C]`` float32 0…1, another date of the same place on the
      tile's grid (:mod:`transforms.guide`), or None.
    guide_valid: ``[H, W]`` float32, 1 = usable guide pixel; with ``guide``.
    notes: Facts for the metrics (e.g. ``guided``, ``guide_path``).
    context: ``[H, W, C]`` float32 0…1, the tile's unguided context computed
      over its neighbours too (:mod:`transforms.neighbours`), or None (the
      window stage computes it from the tile alone).
    full: ``[H, W, count]`` the input's every band in its dtype and order,
      when ``image`` is not all of it (see :mod:`transforms.bands`); None =
      ``image`` is the whole input.
    layout: A :class:`transforms.bands.BandLayout` (which bands ``image``
      holds, how the others are filled), with ``full``.
  """

  pair: TilePair
  image: np.ndarray
  mask: np.ndarray
  profile: dict[str, Any]
  timings: dict[str, float] = dataclasses.field(default_factory=dict)
  nodata: Optional[np.ndarray] = None
  unfilled: Optional[np.ndarray] = None
  guide: Optional[np.ndarray] = None
  guide_valid: Optional[np.ndarray] = None
  notes: dict[str, Any] = dataclasses.field(default_factory=dict)
  context: Optional[np.ndarray] = None
  full: Optional[np.ndarray] = None
  layout: Any = None

  def known(self) -> np.ndarray:
    """``[H, W]`` bool: known ground (not missing, inside the footprint, not unfilled)."""
    k = ~self.mask
    if self.nodata is not None:
      k &= ~self.nodata
    if self.unfilled is not None:
      k &= ~self.unfilled
    return k

  @property
  def key(self) -> str:
    return self.pair.name


@dataclasses.dataclass
class Window:
  """A model-sized window cut from a tile.

  Attributes:
    tile_key: The tile's key (its stem).
    y, x: The window's top-left corner in the tile (may be negative or run
      past the edge: those pixels are reflection padding).
    image: ``[S, S, C]`` float32 in 0…1 (the model's input).
    mask: ``[S, S, 1]`` float32, 1 = missing.
    tile_shape: The tile's (H, W).
    restored: ``[S, S, C]`` float32 model output, once inferred.
    seconds: Seconds spent on this window (cutting and its share of its
      batch's inference).
    spill_to: For windows of large scenes, the folder their restored values
      are spilled to right after inference (see :mod:`transforms.scenes`).
    unknown: ``[S, S, 1]`` float32, 1 = not known ground (holes, no-data,
      unfilled): the ``mask`` the model sees; None = ``mask``. ``mask``
      itself marks the pixels the composite writes.
    context: ``[S, S, C]`` float32 0…1, the classical fill of the whole tile
      or scene cropped to the window (:mod:`transforms.context`), or None.
    guide: ``[S, S, C]`` float32 0…1, the guide mapped to the target's
      radiometry (0 where unusable), or None.
    guide_mask: ``[S, S, 1]`` float32, 1 = guide missing; with ``guide``.
    group: 0 for the model bands; ``g >= 1`` for the ``g``-th group of extra
      bands (``--extra-bands model``, :meth:`transforms.bands.BandLayout.groups`).
    tile: The tile itself (without guide and context) when this is its only
      window: it then leaves inference as a :class:`Solo`, composited with no
      join of tile and windows. None otherwise.
  """

  tile_key: str
  y: int
  x: int
  image: np.ndarray
  mask: np.ndarray
  tile_shape: tuple[int, int] = (0, 0)
  restored: Optional[np.ndarray] = None
  seconds: float = 0.0
  spill_to: Optional[str] = None
  unknown: Optional[np.ndarray] = None
  context: Optional[np.ndarray] = None
  guide: Optional[np.ndarray] = None
  guide_mask: Optional[np.ndarray] = None
  group: int = 0
  tile: Optional[Tile] = None

  def model_inputs(self) -> dict[str, np.ndarray]:
    """The arrays of the model's ``restore`` signature, by input name; a
    window without a guide gets an all-missing one (when it has a context)."""
    out = {"image": self.image, "mask": self.mask if self.unknown is None else self.unknown}
    if self.context is not None:
      out["context"] = self.context
      if self.guide is not None:
        out["guide"], out["guide_mask"] = self.guide, self.guide_mask
      else:
        out["guide"] = np.zeros_like(self.context)
        out["guide_mask"] = np.ones(self.context.shape[:2] + (1,), np.float32)
    return out


@dataclasses.dataclass
class WindowResult:
  """A window's generated values at the missing pixels only.

  Attributes:
    y, x: The window's top-left corner in the tile.
    h, w: The part of the window inside the tile.
    values: ``[n, C]`` float32 (0…1 scale) at the window's missing pixels
      inside the tile, in row-major order.
    weights: ``[n]`` float32 feathering weights of those pixels.
    seconds: Seconds spent on this window.
    group: The window's band group (``Window.group``).
  """

  y: int
  x: int
  h: int
  w: int
  values: np.ndarray
  weights: np.ndarray
  seconds: float = 0.0
  group: int = 0


@dataclasses.dataclass(frozen=True)
class WindowFailure:
  """A window that failed; its tile becomes a dead letter of ``stage``.

  It travels where the window's :class:`WindowResult` (or, for large scenes,
  its ``SpillRef``) would have gone.

  Attributes:
    y, x: The window's top-left corner in the tile.
    reason: Why (the exception, in one line).
    scene: True for a window of a large scene (it joins the scene's spills).
    stage: The stage that failed: ``infer``, or ``window`` (cutting a
      scene's windows failed, e.g. its file changed during the run).
  """

  y: int
  x: int
  reason: str
  scene: bool = False
  stage: str = "infer"


@dataclasses.dataclass(frozen=True)
class Solo:
  """A tile's one and only window, inferred, travelling with the tile.

  Most tiles of a pre-cut archive fit one window; joining each with its
  window's result by key would ship the whole tile through a shuffle. Its
  window carries it instead (:attr:`Window.tile`) and it comes out of
  inference as this, ready to composite (:mod:`transforms.tile_path`).

  Attributes:
    tile: The tile, without guide and context (what the composite reads).
    result: Its window's :class:`WindowResult`, or a :class:`WindowFailure`.
  """

  tile: Tile
  result: Any


@dataclasses.dataclass(frozen=True)
class DeadLetter:
  """An input that did not end restored, and why.

  Attributes:
    path: The image's path or URI.
    stage: The stage that refused it (match, decode, validate, infer, write).
    reason: A human-readable reason.
    outcome: ``failed``, or ``skipped`` for inputs with nothing to do (e.g. a
      mask with no missing pixel).
  """

  path: str
  stage: str
  reason: str
  outcome: str = FAILED

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def of_failed_windows(cls, path: str, failures: list[WindowFailure]) -> "DeadLetter":
    """The dead letter of an input some of whose windows failed (the first failure's stage and reason)."""
    return cls(path, failures[0].stage, f"{len(failures)} window(s) failed: {failures[0].reason}")


@dataclasses.dataclass
class TileResult:
  """What happened to one tile, as written to ``metrics/*.jsonl``."""

  path: str
  stem: str
  outcome: str
  output: Optional[str] = None
  metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True, default=_jsonable)


def _jsonable(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value)}")


@dataclasses.dataclass
class RestoredTile:
  """A tile with its missing pixels filled, ready to write.

  Attributes:
    tile: The decoded input.
    restored: ``[H, W, count]`` in the input dtype: every band of the input
      (``Tile.full``), in its order.
    windows: How many windows went through the model.
    provenance: ``[H, W]`` uint8 classes of the output's pixels (0 observed,
      1 generated, 2 generated with a guide date, 3 left unfilled, 255
      no-data; see :mod:`transforms.provenance`), or None to derive them
      from the mask (255 no-data, 1 missing, 0 elsewhere).
    metrics: Extra per-tile metrics (``unfilled``, ``guided`` …).
  """

  tile: Tile
  restored: np.ndarray
  windows: int = 0
  provenance: Optional[np.ndarray] = None
  metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
