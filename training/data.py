"""Training samples in numpy: crops, masks, guide dates and their context.

No TensorFlow and no JAX here, so the same sampler feeds the JAX trainer on a
GPU machine (in worker processes) and any CPU run. Each element is a pure
function of ``(seed, index)``: runs are reproducible and resumable.

One element, drawn by :meth:`Sampler.sample`:

1. a *place* (one or several co-registered dates of the same ground,
   :func:`group_places`), weighted by the square root of its area; a target
   date; with probability ``p_guide`` (places with 2+ dates) another date as
   the guide — other seasons, years and sensors, so the model meets
   radiometric and land-cover change;
2. a ``region`` (twice the crop) from the split's area (by area:
   :mod:`training.scenes`), augmented (flips, rot90, a random choice and
   order of ``bands`` bands, the same for target and guide);
3. a hole mask over the region (:class:`training.masks.MaskGenerator`), and
   for the guide its own clouds (none, or 1–50 %);
4. the **context** over the whole region, with the pipeline's own code
   (:mod:`transforms.context`): ``push_pull``, or ``regression.guided_fill`` when there
   is a guide (which also maps the guide to the target's radiometry);
5. the crop, placed in the region so that it holds holes: the model learns
   from context that comes from beyond its window, as in a scene.

Elements are dicts of float32 arrays: ``image``/``target``/``context``/
``guide`` ``[S, S, C]``, ``mask``/``guide_mask`` ``[S, S, 1]``.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import Iterator, Optional, Sequence

import numpy as np

from training.masks import MaskGenerator
from training.scenes import Scene, crop_origins
from transforms import context as ctx
from transforms import regression

KEYS = ("image", "mask", "context", "guide", "guide_mask", "target")


@dataclasses.dataclass
class Place:
  """Co-registered dates of the same ground (same grid and shape)."""
  name: str
  scenes: list[Scene]


def place_key(path: str, shape: tuple[int, ...]) -> str:
  """Scenes of one place share a folder, a shape and a name up to their dates."""
  stem = os.path.splitext(os.path.basename(path))[0]
  stem = re.sub(r"_(clear|cloudy)", "", re.sub(r"\d{4,}(doy\d{1,3})?", "#", stem))
  return f"{os.path.basename(os.path.dirname(path))}/{stem}/{shape[-1]}"


def group_places(scenes: Sequence[Scene]) -> list[Place]:
  """Groups dates of one place; dates differing by a row or column (NAIP
  quarter-quads) are cropped to their common top-left extent."""
  groups: dict[str, list[Scene]] = collections.OrderedDict()
  for s in scenes:
    groups.setdefault(place_key(s.path, s.image.shape), []).append(s)
  places = []
  for k, v in groups.items():
    h = min(s.image.shape[0] for s in v)
    w = min(s.image.shape[1] for s in v)
    if any(abs(s.image.shape[0] - h) > 2 or abs(s.image.shape[1] - w) > 2 for s in v):
      places.extend(Place(f"{k}/{i}", [s]) for i, s in enumerate(v))
      continue
    places.append(Place(k, [Scene(s.path, s.image[:h, :w], s.valid[:h, :w]) for s in v]))
  return places


class Sampler:
  """Draws training or validation elements (see module docstring).

  Args:
    places: Places in memory.
    crop: Side of the element.
    masks: Hole masks for the target.
    split: "train" or "val" area.
    bands: Bands per element (the model's C).
    region: Side of the region the context is computed over (>= crop).
    p_guide: Probability of a guide date where a place has several.
    augment: Flips, rot90, band choice and order.
    guide_masks: Clouds of the guide (default: blobs and real clouds of
      ``masks``).
  """

  def __init__(self,
               places: Sequence[Place],
               crop: int,
               masks: MaskGenerator,
               split: str = "train",
               bands: int = 3,
               region: Optional[int] = None,
               p_guide: float = 0.6,
               augment: bool = True,
               guide_masks: Optional[MaskGenerator] = None):
    self.crop, self.masks, self.split, self.bands = crop, masks, split, bands
    self.region = max(region or 2 * crop, crop)
    self.p_guide, self.augment = p_guide, augment
    self.guide_masks = guide_masks or masks
    self.places, self.origins, weights = [], [], []
    for p in places:
      if p.scenes[0].image.shape[-1] < bands:
        continue
      valid = np.logical_and.reduce([s.valid for s in p.scenes])
      o = crop_origins(valid, self.region, split, stride=8 if split == "train" else self.region // 2)
      if len(o):
        self.places.append(p)
        self.origins.append(o)
        weights.append(np.sqrt(len(o)))
    if not self.places:
      raise ValueError(f"no {self.region}x{self.region} {split} regions in any scene")
    w = np.array(weights, np.float64)
    self.p = w / w.sum()

  @property
  def files(self) -> list[str]:
    return [s.path for p in self.places for s in p.scenes]

  def sample(self, seed: int, index: int, guided: Optional[bool] = None) -> dict[str, np.ndarray]:
    """The element number ``index`` of the stream ``seed``.

    Args:
      guided: Force a guide (True), none (False), or draw (None).
    """
    return self.samples(seed, index, guided, crops=1)[0]

  def samples(self,
              seed: int,
              index: int,
              guided: Optional[bool] = None,
              crops: int = 1) -> list[dict[str, np.ndarray]]:
    """``crops`` elements cut from the region of element ``index`` (the
    context of a region is the costly part; its crops differ in place)."""
    rng = np.random.default_rng([seed, index])
    k = int(rng.choice(len(self.places), p=self.p))
    place, origins = self.places[k], self.origins[k]
    y, x = origins[int(rng.integers(len(origins)))]
    r = self.region
    t = int(rng.integers(len(place.scenes)))
    use_guide = len(place.scenes) > 1 and (rng.random() < self.p_guide if guided is None else guided)
    g = int(rng.choice([i for i in range(len(place.scenes)) if i != t])) if use_guide else None
    nb = place.scenes[0].image.shape[-1]
    if self.augment:
      band_idx = rng.choice(nb, self.bands, replace=False)
    else:
      band_idx = np.arange(self.bands)
    flips = (self.augment and rng.random() < 0.5, self.augment and
             rng.random() < 0.5, int(rng.integers(4)) if self.augment else 0)

    def take(scene: Scene) -> np.ndarray:
      a = scene.image[y:y + r, x:x + r][..., band_idx]
      if flips[0]:
        a = a[:, ::-1]
      if flips[1]:
        a = a[::-1]
      return np.ascontiguousarray(np.rot90(a, flips[2]), np.float32)

    target = take(place.scenes[t])
    hole = self.masks.sample(rng, r, r) > 0.5
    valid = (~hole).astype(np.float32)
    if g is not None:
      guide = take(place.scenes[g])
      gcov = rng.uniform(0.01, 0.5) if rng.random() < 0.5 else 0.0
      ghole = (self.guide_masks.sample(rng, r, r, coverage=gcov) > 0.5) if gcov else np.zeros_like(hole)
      gvalid = (~ghole).astype(np.float32)
      filled = regression.guided_fill(target, valid, guide, gvalid)
      context, mapped = filled.fill, filled.mapped
    else:
      gvalid = np.zeros((r, r), np.float32)
      context, mapped = ctx.push_pull(target, valid), np.zeros_like(target)
    out = []
    for _ in range(crops):
      cy, cx = self._place_crop(rng, hole)
      s = self.crop
      sl = (slice(cy, cy + s), slice(cx, cx + s))
      m = hole[sl].astype(np.float32)[..., None]
      out.append(
          dict(image=target[sl] * (1.0 - m),
               mask=m,
               context=context[sl],
               guide=mapped[sl],
               guide_mask=(1.0 - gvalid[sl])[..., None],
               target=target[sl]))
    return out

  def _place_crop(self, rng: np.random.Generator, hole: np.ndarray) -> tuple[int, int]:
    """A crop corner inside the region whose crop holds 1 % holes or more."""
    span = self.region - self.crop
    best = (0, 0)
    for _ in range(6):
      cy, cx = (int(rng.integers(span + 1)), int(rng.integers(span + 1))) if span else (0, 0)
      best = (cy, cx)
      if hole[cy:cy + self.crop, cx:cx + self.crop].mean() >= 0.01:
        break
    return best

  def batch(self, seed: int, start: int, n: int, crops_per_region: int = 2) -> dict[str, np.ndarray]:
    """``n`` elements from regions ``start …`` (``crops_per_region`` each), stacked."""
    k = self._per_region(crops_per_region)
    return _stacked([it for i in range(-(-n // k)) for it in self.samples(seed, start + i, crops=k)][:n])

  def _per_region(self, crops_per_region: int) -> int:
    """Crops cut from one region's context (1 where the region is one crop)."""
    return max(1, crops_per_region if self.region > self.crop else 1)

  def batch_group(self,
                  seed: int,
                  start: int,
                  n: int,
                  crops_per_region: int = 2,
                  reuse: int = 1) -> list[dict[str, np.ndarray]]:
    """``reuse`` batches of ``n`` elements that share their regions' contexts.

    The regions ``start …`` of :meth:`batch` each give ``reuse`` times as
    many crops, and each batch takes ``crops_per_region`` from every region:
    every batch has as many distinct regions as one :meth:`batch`, at
    ``1 / reuse`` of the context cost per crop (the data stream of a GPU run
    is bound by it). With ``reuse > 1`` each crop is also rotated and flipped
    at random (all its arrays alike), so that crops of one region overlap
    less often in the same orientation. ``reuse=1`` is ``[batch(...)]``.
    """
    if reuse <= 1:
      return [self.batch(seed, start, n, crops_per_region)]
    k = self._per_region(crops_per_region)
    regions = [self.samples(seed, start + i, crops=k * reuse) for i in range(-(-n // k))]
    rng = np.random.default_rng([seed, start, 1])
    return [
        _stacked([_dihedral(it, int(rng.integers(8)))
                  for crops in regions
                  for it in crops[r * k:(r + 1) * k]][:n])
        for r in range(reuse)
    ]

  def fixed_set(self, n: int, seed: int, guided: Optional[bool] = None) -> dict[str, np.ndarray]:
    """``n`` reproducible elements stacked (validation)."""
    return _stacked([self.sample(seed, i, guided=guided) for i in range(n)])


def _stacked(items: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Elements stacked into one batch, by key."""
  return {k: np.stack([it[k] for it in items]) for k in KEYS}


def _dihedral(item: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
  """``item``'s arrays rotated by ``t % 4`` quarter turns, then mirrored if ``t >= 4``."""

  def f(a: np.ndarray) -> np.ndarray:
    a = np.rot90(a, t % 4)
    return np.ascontiguousarray(a[:, ::-1] if t >= 4 else a)

  return {key: f(v) for key, v in item.items()}


# --- worker processes -------------------------------------------------------

_WORKER: dict = {}


def _init_worker(factory, args):
  _WORKER["sampler"] = factory(*args)


def _draw(job):
  seed, start, n, k, reuse = job
  return _WORKER["sampler"].batch_group(seed, start, n, crops_per_region=k, reuse=reuse)


def batches(factory,
            args,
            batch: int,
            seed: int = 0,
            start: int = 0,
            workers: int = 0,
            prefetch: int = 8,
            crops_per_region: int = 2,
            region_reuse: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """An endless stream of batches, drawn in ``workers`` processes.

  Args:
    factory: A picklable callable returning the :class:`Sampler`; each worker
      builds its own (``spawn``: safe beside JAX's threads).
    args: Its arguments.
    batch: Batch size.
    seed: Stream seed.
    start: First batch number (resume).
    workers: Processes; 0 draws in this process.
    prefetch: Batches in flight.
    crops_per_region: Elements cut from each region's context (the costly part).
    region_reuse: Consecutive batches that share their regions' contexts
      (:meth:`Sampler.batch_group`); 1: every batch has its own regions.
      ``start`` then counts groups of that many batches.
  """
  reuse = max(1, region_reuse)
  if workers <= 0:
    sampler = factory(*args)
    i = start
    while True:
      yield from sampler.batch_group(seed, i * batch, batch, crops_per_region, reuse)
      i += 1
  import multiprocessing as mp  # pylint: disable=import-outside-toplevel
  pool = mp.get_context("spawn").Pool(workers, _init_worker, (factory, args))
  try:
    pending: collections.deque = collections.deque()
    i = start
    while True:
      while len(pending) < max(-(-prefetch // reuse), workers):
        pending.append(pool.apply_async(_draw, ((seed, i * batch, batch, crops_per_region, reuse),)))
        i += 1
      yield from pending.popleft().get()
  finally:
    # Let the batches in flight land first: a worker terminated while it writes
    # a large result leaves half a message in the result pipe, and the pool's
    # result thread then waits on it forever (terminate() never returns).
    for result in pending:
      result.wait(timeout=120)
    pool.terminate()
