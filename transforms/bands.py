"""Every band comes out: the bands beyond the model's ("extra bands").

The model restores ``model.bands`` bands of an image: the ones ``--bands`` (or
a profile's ``bands``) names, or else its first ``model.bands`` bands. The
output always has **all** the input's bands, in the input's order, dtype and
profile. The other bands ("extra bands", e.g. the NIR of a NAIP or Sentinel-2
RGBN stack, or the ten bands of a 13-band Sentinel-2 L1C scene beside
B04,B03,B02) get their holes filled too, by one of two methods
(``--extra-bands``):

* ``guided`` (:func:`guided_extra`): each extra band is regressed on the
  restored model bands. A global least-squares fit over the known pixels
  turns the model bands into one synthetic band per extra band; that
  synthetic band then guides the extra band exactly as a guide date guides a
  target (:func:`transforms.context.guided_fill`: a guided-filter style local
  linear fit on the known pixels around the hole, plus the fit's residual
  interpolated into the hole by push-pull). In the hole, the extra band thus
  follows the texture the model put into the model bands.
* ``model`` (:meth:`BandLayout.groups`): the extra bands go through the model
  themselves, in groups of ``model.bands`` bands (the last group padded by
  repeating its last band), each group windowed, inferred and composited like
  the model bands (windows carry their ``group``).

A pixel outside the holes (known ground, no-data, beyond
``--max-fill-distance``) is never changed in any band; a probability band
(``--mask-source band:K``) is copied unchanged.

Which is better is measured per band by ``benchmarks/bands.py`` on the shared
4-band NAIP and Sentinel-2 L2A RGBN and 13-band Sentinel-2 L1C scenes (see the
README).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from transforms import context as ctx

METHODS = ("guided", "model")
DEFAULT_METHOD = "guided"
# Known pixels sampled for the global regression of an extra band on the model bands.
FIT_SAMPLES = 200_000
# Ridge term of the global regression (on the 0…1 scale; keeps collinear bands stable).
RIDGE = 1e-6


@dataclasses.dataclass(frozen=True)
class BandLayout:
  """Where an image's bands go.

  Attributes:
    count: The input's (and the output's) band count.
    model: 0-based input bands the model restores, in the model's order.
    passthrough: 0-based input bands copied unchanged (a probability band).
    method: How extra bands are filled: ``guided`` or ``model``.
  """

  count: int
  model: tuple[int, ...]
  passthrough: tuple[int, ...] = ()
  method: str = DEFAULT_METHOD

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"--extra-bands must be one of {', '.join(METHODS)}, got {self.method!r}")
    every = list(self.model) + list(self.passthrough)
    if not self.model or any(not 0 <= i < self.count for i in every) or len(set(every)) != len(every):
      raise ValueError(f"bad band layout: model {self.model}, passthrough {self.passthrough} "
                       f"of {self.count} bands")

  @property
  def extra(self) -> tuple[int, ...]:
    """0-based input bands that are neither the model's nor passed through, in input order."""
    taken = set(self.model) | set(self.passthrough)
    return tuple(i for i in range(self.count) if i not in taken)

  def groups(self) -> list[tuple[int, ...]]:
    """The extra bands in groups of ``len(model)`` (0-based input bands); the
    last group is padded by repeating its last band. Group ``g`` (1-based in
    windows, ``Window.group``) is ``groups()[g - 1]``."""
    m, extra = len(self.model), self.extra
    out = []
    for i in range(0, len(extra), m):
      g = list(extra[i:i + m])
      out.append(tuple(g + [g[-1]] * (m - len(g))))
    return out

  def describe(self) -> dict:
    """The layout for the metrics line (1-based bands)."""
    return {"count": self.count, "model": [i + 1 for i in self.model],
            "extra": [i + 1 for i in self.extra], "passthrough": [i + 1 for i in self.passthrough],
            "extra_method": self.method if self.extra else None}


def layout_of(count: int, model: Sequence[int], mask_band: Optional[int] = None,
              method: str = DEFAULT_METHOD) -> Optional[BandLayout]:
  """The layout of an image of ``count`` bands whose bands ``model`` (0-based)
  the model restores; None when the model bands are the whole image in order."""
  passthrough = () if mask_band is None else (mask_band - 1,)
  layout = BandLayout(count=count, model=tuple(model), passthrough=passthrough, method=method)
  if layout.model == tuple(range(count)):
    return None
  return layout


def full_image(tile) -> np.ndarray:
  """``[H, W, count]`` the tile's input, all bands (``Tile.full``, or its image)."""
  return tile.image if getattr(tile, "full", None) is None else tile.full


# --------------------------------------------------------------------------- guided


def fit_global(model: np.ndarray, extra: np.ndarray, known: np.ndarray,
               samples: int = FIT_SAMPLES, seed: int = 0) -> np.ndarray:
  """Least-squares coefficients of each extra band on the model bands.

  Args:
    model: ``[H, W, M]`` 0…1 (or ``[N, M]`` pixels).
    extra: ``[H, W, E]`` 0…1 (or ``[N, E]``).
    known: ``[H, W]`` (or ``[N]``) bool, the pixels to fit on.
    samples: At most this many known pixels are used (evenly drawn).

  Returns:
    ``[E, M + 1]`` float64: gains per model band, then the offset. With no
    known pixel: zero gains, offset 0.
  """
  x = model[known].astype(np.float64).reshape(-1, model.shape[-1])
  y = extra[known].astype(np.float64).reshape(-1, extra.shape[-1])
  m, e = x.shape[1], y.shape[1]
  if x.shape[0] == 0:
    return np.zeros((e, m + 1))
  if x.shape[0] > samples:
    pick = np.random.default_rng(seed).choice(x.shape[0], samples, replace=False)
    x, y = x[pick], y[pick]
  if x.shape[0] < 2 * (m + 1):
    out = np.zeros((e, m + 1))
    out[:, -1] = y.mean(axis=0)
    return out
  xm, ym = x.mean(axis=0), y.mean(axis=0)
  xc, yc = x - xm, y - ym
  cov = xc.T @ xc / x.shape[0] + RIDGE * np.eye(m)
  gains = np.linalg.solve(cov, xc.T @ yc / x.shape[0]).T  # [E, M]
  return np.concatenate([gains, (ym - gains @ xm)[:, None]], axis=1)


def apply_global(coef: np.ndarray, model: np.ndarray) -> np.ndarray:
  """``[H, W, E]`` float32: the model bands through :func:`fit_global`'s coefficients."""
  out = np.tensordot(np.asarray(model, np.float32), coef[:, :-1].T.astype(np.float32), axes=1)
  return out + coef[:, -1].astype(np.float32)


def guided_extra(extra: np.ndarray, model: np.ndarray, known: np.ndarray, hole: np.ndarray,
                 coef: Optional[np.ndarray] = None, radius: int = ctx.GUIDE_RADIUS) -> np.ndarray:
  """The extra bands filled under the guidance of the restored model bands.

  Args:
    extra: ``[H, W, E]`` float32 0…1, the extra bands (anything in holes).
    model: ``[H, W, M]`` float32 0…1, the model bands: input values at known
      pixels, restored values in the holes.
    known: ``[H, W]`` bool, known ground (the fit's pixels).
    hole: ``[H, W]`` bool, the pixels to fill (where ``model`` is restored).
    coef: :func:`fit_global` coefficients (e.g. of a whole scene); default:
      fitted on this block's known pixels.
    radius: Half-side of the local fit's squares (pixels).

  Returns:
    ``[H, W, E]`` float32 0…1: ``extra`` outside the holes, the guided fill in them.
  """
  if coef is None:
    coef = fit_global(model, extra, known)
  valid = known.astype(np.float32)
  guide_valid = (known | hole).astype(np.float32)
  zeros = np.zeros(known.shape + (1,), np.float32)
  out = np.array(extra, np.float32, copy=True)
  for e in range(extra.shape[2]):  # One band at a time: memory follows one band.
    synthetic = apply_global(coef[e:e + 1], model)
    g = ctx.guided_fill(extra[:, :, e:e + 1], valid, synthetic, guide_valid, unguided=zeros,
                        radius=radius)
    out[:, :, e] = np.where(hole, g.fill[:, :, 0], extra[:, :, e])
  return out


# --------------------------------------------------------------------------- tiles


def restore_tile(tile, restored: np.ndarray, vrange: tuple[float, float],
                 results: Iterable = ()) -> np.ndarray:
  """The whole restored tile, every band, from its restored model bands.

  Args:
    tile: A :class:`transforms.records.Tile` with ``full`` and ``layout``.
    restored: ``[H, W, M]`` the composited model bands, input dtype.
    vrange: The 0…1 scaling ``(lo, hi)``.
    results: The tile's window results; those of ``group >= 1`` are the
      extra bands' (``--extra-bands model``).

  Returns:
    ``[H, W, count]`` input dtype: the input with every band's holes filled.
  """
  # pylint: disable=import-outside-toplevel
  from transforms.composite import composite, to_dtype
  from transforms.window import to_unit
  layout = tile.layout
  out = tile.full.copy()
  out[:, :, list(layout.model)] = restored
  extra = list(layout.extra)
  if not extra or not tile.mask.any():
    return out
  nodata = tile.profile.get("nodata")
  if layout.method == "model":
    by_group: dict[int, list] = {}
    for r in results:
      by_group.setdefault(getattr(r, "group", 0), []).append(r)
    done = set()
    for g, bands in enumerate(layout.groups(), start=1):
      filled = composite(tile.full[:, :, list(bands)], tile.mask, by_group.get(g, []), vrange, nodata)
      for j, b in enumerate(bands):
        if b not in done:
          out[:, :, b] = filled[:, :, j]
          done.add(b)
    return out
  lo, hi = vrange
  hole = tile.mask
  filled = guided_extra(to_unit(tile.full[:, :, extra], lo, hi), to_unit(restored, lo, hi),
                        tile.known(), hole)
  sub = out[:, :, extra]
  sub[hole] = to_dtype(filled[hole], str(out.dtype), vrange, nodata)
  out[:, :, extra] = sub
  return out


# --------------------------------------------------------------------------- scenes


def scene_coefficients(src, layout: BandLayout, known, vrange: tuple[float, float],
                       max_side: int = 1024) -> np.ndarray:
  """:func:`fit_global` over a whole streamed scene, from every ``step``-th
  pixel of every ``step``-th row (at most ``max_side``² pixels), read by stripes.

  Args:
    src: The scene open in rasterio.
    known: ``known(a, b, step)`` -> known ground of rows ``[a, b)``, every
      ``step``-th pixel (bool ``[(b - a) / step, W / step]``).
  """
  # pylint: disable=import-outside-toplevel
  from transforms.scenes import STRIPE_ROWS, read_rows
  from transforms.window import to_unit
  h, w = src.height, src.width
  step = max(1, int(np.ceil(max(h, w) / max_side)))
  stripe = max(step, STRIPE_ROWS // step * step)
  parts = []
  for r0 in range(0, h, stripe):
    rows = read_rows(src, r0, min(h, r0 + stripe), tuple(range(src.count)))
    parts.append(rows[::step, ::step].copy())  # A copy: a view would keep the whole stripe.
  unit = to_unit(np.concatenate(parts, axis=0), *vrange)
  k = known(0, h, step)
  return fit_global(unit[:, :, list(layout.model)], unit[:, :, list(layout.extra)], k)


def fill_rows_guided(raw: np.ndarray, restored: np.ndarray, known: np.ndarray, hole: np.ndarray,
                     top: int, layout: BandLayout, vrange: tuple[float, float], nodata, coef: np.ndarray,
                     chunk: int = 1024, halo: int = 4 * ctx.GUIDE_RADIUS) -> np.ndarray:
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
  # pylint: disable=import-outside-toplevel
  from transforms.composite import to_dtype
  from transforms.window import to_unit
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
    m_unit[top:top + s] = np.where(stripe_hole[:, a:b, None], to_unit(restored[:, a:b], lo, hi),
                                   m_unit[top:top + s])
    h_blk = np.zeros(known[:, a:b].shape, bool)
    h_blk[top:top + s] = stripe_hole[:, a:b]
    filled = guided_extra(to_unit(raw[:, a:b][:, :, extra], lo, hi), m_unit, known[:, a:b], h_blk, coef)
    part = filled[top:top + s, c0 - a:c1 - a]
    hh = stripe_hole[:, c0:c1]
    block = out[:, c0:c1]
    block[hh] = to_dtype(part[hh], str(out.dtype), vrange, nodata)
  return out


def per_band_psnr(restored: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> list:
  """Hole PSNR (dB) of each band, both ``[H, W, C]`` on one 0…1 scale."""
  out = []
  for c in range(restored.shape[2]):
    d = restored[:, :, c][mask].astype(np.float64) - truth[:, :, c][mask].astype(np.float64)
    mse = float(np.mean(d * d)) if d.size else 0.0
    out.append(float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"))
  return out


class SceneBands:
  """The extra bands of a streamed scene, written stripe by stripe.

  :class:`transforms.scenes.AssembleScenes` asks it which rows to read
  (:meth:`rows`: the stripe, plus a halo for the guided fit) and hands it
  each stripe's input rows (every band) and composited model bands
  (:meth:`stripe`); memory follows the stripe (and, for ``guided``, one
  column chunk of one band at a time), not the scene.
  """

  def __init__(self, ref, spills: Sequence, mask: np.ndarray, vrange: tuple[float, float],
               halo: int = 4 * ctx.GUIDE_RADIUS):
    self.layout: BandLayout = ref.layout
    self._mask, self._vrange = mask, vrange
    # Known ground is derived a stripe at a time (a scene-sized copy is 64 MB at 8000²).
    self._outside = [a for a in (ref.nodata(), ref.unfilled()) if a is not None]
    self._nodata = ref.profile.get("nodata")
    self._groups = self.layout.groups() if self.layout.method == "model" else []
    guided = self.layout.method == "guided" and bool(self.layout.extra)
    self._halo = halo if guided else 0
    self._coef = None
    self._pending = {g: sorted((s for s in spills if getattr(s, "group", 0) == g), key=lambda s: (s.y, s.x))
                     for g in range(1, len(self._groups) + 1)}
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
    # pylint: disable=import-outside-toplevel
    from transforms.composite import composite
    from transforms.scenes import crop_rows, unspill
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
      out[:, :, list(layout.extra)] = fill_rows_guided(
          raw, restored, self._known(a, a + raw.shape[0]), self._mask[a:a + raw.shape[0]], top, layout,
          self._vrange, self._nodata, self._coef)
    return out


def group_windows(item, spec, output_dir: str) -> Iterator:
  """The windows of every band group of a tile's or scene's extra bands
  (``--extra-bands model``), ``Window.group`` set; unguided, and each group
  with its own context (its own push-pull, or for a scene its own low-resolution pass)."""
  # pylint: disable=import-outside-toplevel
  from transforms import scene_context
  from transforms.records import Tile
  from transforms.window import cut, tile_context
  layout = item.layout
  if layout is None or layout.method != "model" or not layout.extra:
    return
  for g, bands in enumerate(layout.groups(), start=1):
    if isinstance(item, Tile):
      part = dataclasses.replace(item, image=np.ascontiguousarray(item.full[:, :, list(bands)]),
                                 guide=None, guide_valid=None, context=None)
      fill, _ = tile_context(part, spec)
      windows = cut(part, spec, fill)
    else:
      windows = scene_context.cut_scene(dataclasses.replace(item, band_index=tuple(bands), guide=None),
                                        spec, output_dir, None, write_preview=False)
    for win in windows:
      yield dataclasses.replace(win, group=g)


def for_model_bands(spec, layout):
  """A guide's or neighbours' spec (anything with ``bands``) that reads the
  model's bands of an image whose model bands were chosen without ``--bands``
  (its first ones): the same bands of the other file, by number."""
  if spec is None or layout is None or getattr(spec, "bands", None):
    return spec
  return dataclasses.replace(spec, bands=tuple(i + 1 for i in layout.model))
