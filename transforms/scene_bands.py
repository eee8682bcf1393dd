"""The extra bands of a streamed scene (every band comes out, :mod:`transforms.bands`).

:class:`SceneBands` is handed each stripe of the scene as
:class:`transforms.scene_write.AssembleScenes` writes it: the model's band
groups' own spilled windows (``--extra-bands model``), or the guided fill of
the extra bands by the restored model bands, one column chunk of one band at a
time, with a global regression fitted once on every n-th pixel of the scene
(``guided``). Memory follows the stripe, not the scene.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from transforms import bands as bands_lib
from transforms.bands import EXTRA_RADIUS, BandLayout
from transforms.composite import composite, to_dtype
from transforms.scaling import to_unit
from transforms.scenes import STRIPE_ROWS, crop_rows, read_rows, unspill


def scene_coefficients(src, layout: BandLayout, known, vrange: tuple[float, float], max_side: int = 1024) -> np.ndarray:
  """:func:`transforms.bands.fit_global` over a whole streamed scene, from every ``step``-th
  pixel of every ``step``-th row (at most ``max_side``² pixels), read by stripes.

  Args:
    src: The scene open in rasterio.
    known: ``known(a, b, step)`` -> known ground of rows ``[a, b)``, every
      ``step``-th pixel (bool ``[(b - a) / step, W / step]``).
  """
  h, w = src.height, src.width
  step = max(1, int(np.ceil(max(h, w) / max_side)))
  stripe = max(step, STRIPE_ROWS // step * step)
  parts = []
  for r0 in range(0, h, stripe):
    rows = read_rows(src, r0, min(h, r0 + stripe), tuple(range(src.count)))
    parts.append(rows[::step, ::step].copy())  # A copy: a view would keep the whole stripe.
  unit = to_unit(np.concatenate(parts, axis=0), *vrange)
  k = known(0, h, step)
  return bands_lib.fit_global(unit[:, :, list(layout.model)], unit[:, :, list(layout.extra)], k)


def fill_rows_guided(raw: np.ndarray,
                     restored: np.ndarray,
                     known: np.ndarray,
                     hole: np.ndarray,
                     top: int,
                     layout: BandLayout,
                     vrange: tuple[float, float],
                     nodata,
                     coef: np.ndarray,
                     chunk: int = 1024,
                     halo: int = 4 * EXTRA_RADIUS) -> np.ndarray:
  """The extra bands of a stripe of a streamed scene, filled (``guided``).

  Args:
    raw: ``[R, W, count]`` input rows around the stripe (the stripe plus up
      to ``halo`` rows above and below), input dtype.
    restored: ``[S, W, M]`` the stripe's composited model bands.
    known, hole: ``[R, W]`` bool for the rows of ``raw``.
    top: The stripe's first row within ``raw``.
    coef: The scene's :func:`scene_coefficients`.
    chunk, halo: Columns are done ``chunk`` at a time with ``halo`` columns
      of context each side, so memory follows the chunk, not the scene.

  Returns:
    ``[S, W, E]`` input dtype: the stripe's extra bands, holes filled.
  """
  lo, hi = vrange
  extra, model = list(layout.extra), list(layout.model)
  s, w = restored.shape[:2]
  out = np.ascontiguousarray(raw[top:top + s][:, :, extra])
  stripe_hole = hole[top:top + s]
  if not stripe_hole.any():
    return out
  for c0 in range(0, w, chunk):
    c1 = min(w, c0 + chunk)
    if not stripe_hole[:, c0:c1].any():
      continue
    a, b = max(0, c0 - halo), min(w, c1 + halo)
    m_unit = to_unit(raw[:, a:b][:, :, model], lo, hi)
    m_unit[top:top + s] = np.where(stripe_hole[:, a:b, None], to_unit(restored[:, a:b], lo, hi), m_unit[top:top + s])
    h_blk = np.zeros(known[:, a:b].shape, bool)
    h_blk[top:top + s] = stripe_hole[:, a:b]
    filled = bands_lib.guided_extra(to_unit(raw[:, a:b][:, :, extra], lo, hi), m_unit, known[:, a:b], h_blk, coef)
    part = filled[top:top + s, c0 - a:c1 - a]
    hh = stripe_hole[:, c0:c1]
    block = out[:, c0:c1]
    block[hh] = to_dtype(part[hh], str(out.dtype), vrange, nodata)
  return out


class SceneBands:
  """The extra bands of a streamed scene, written stripe by stripe.

  :class:`transforms.scene_write.AssembleScenes` asks it which rows to read
  (:meth:`rows`: the stripe, plus a halo for the guided fit) and hands it
  each stripe's input rows (every band) and composited model bands
  (:meth:`stripe`); memory follows the stripe (and, for ``guided``, one
  column chunk of one band at a time), not the scene.
  """

  def __init__(self,
               ref,
               spills: Sequence,
               mask: np.ndarray,
               vrange: tuple[float, float],
               halo: int = 4 * EXTRA_RADIUS):
    self.layout: BandLayout = ref.layout
    self._mask, self._vrange = mask, vrange
    # Known ground is derived a stripe at a time (a scene-sized copy is 64 MB at 8000²).
    self._outside = [a for a in (ref.nodata(), ref.unfilled()) if a is not None]
    self._nodata = ref.profile.get("nodata")
    self._groups = self.layout.groups() if self.layout.method == "model" else []
    guided = self.layout.method == "guided" and bool(self.layout.extra)
    self._halo = halo if guided else 0
    self._coef = None
    self._pending = {
        g: sorted((s for s in spills if getattr(s, "group", 0) == g), key=lambda s: (s.y, s.x))
        for g in range(1,
                       len(self._groups) + 1)
    }
    self._loaded: dict[int, list] = {g: [] for g in self._pending}
    self.infer_seconds = 0.0

  def _known(self, a: int, b: int, step: int = 1) -> np.ndarray:
    """``[(b - a) / step, W / step]`` bool known ground of rows ``[a, b)``, every ``step``-th pixel."""
    k = ~self._mask[a:b:step, ::step]
    for outside in self._outside:
      k &= ~outside[a:b:step, ::step]
    return k

  def start(self, src) -> None:
    """Fits the scene's global regression (``guided``) from every n-th pixel of ``src``."""
    if self._halo and self._mask.any():
      self._coef = scene_coefficients(src, self.layout, self._known, self._vrange)

  def rows(self, h: int, r0: int, r1: int) -> tuple[int, int]:
    """The rows ``[a, b)`` to read (every band) for the stripe ``[r0, r1)``."""
    return max(0, r0 - self._halo), min(h, r1 + self._halo)

  def stripe(self, raw: np.ndarray, a: int, r0: int, r1: int, restored: np.ndarray) -> np.ndarray:
    """``[r1 - r0, W, count]`` the stripe's output, every band.

    Args:
      raw: ``[b - a, W, count]`` input rows ``[a, b)`` (:meth:`rows`).
      restored: ``[r1 - r0, W, M]`` the stripe's composited model bands.
    """
    layout, top = self.layout, r0 - a
    out = raw[top:top + (r1 - r0)].copy()
    out[:, :, list(layout.model)] = restored
    m = self._mask[r0:r1]
    for g, bands in enumerate(self._groups, start=1):
      pending, loaded = self._pending[g], self._loaded[g]
      while pending and pending[0].y < r1:
        loaded.append(unspill(pending.pop(0)))
        self.infer_seconds += loaded[-1].seconds
      if m.any():
        parts = [p for p in (crop_rows(r, r0, r1, self._mask) for r in loaded) if p is not None]
        filled = composite(raw[top:top + (r1 - r0)][:, :, list(bands)], m, parts, self._vrange, self._nodata)
        for j, b in enumerate(bands):
          if j == 0 or b != bands[j - 1]:
            out[:, :, b] = filled[:, :, j]
      self._loaded[g] = [r for r in loaded if r.y + r.h > r1]
    if self._halo and m.any():
      out[:, :, list(layout.extra)] = fill_rows_guided(raw, restored, self._known(a, a + raw.shape[0]),
                                                       self._mask[a:a + raw.shape[0]], top, layout, self._vrange,
                                                       self._nodata, self._coef)
    return out
