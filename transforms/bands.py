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
  target (:func:`transforms.regression.guided_fill`: a guided-filter style local
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
from typing import Optional, Sequence

import numpy as np

from transforms import regression

METHODS = ("guided", "model")
DEFAULT_METHOD = "guided"
# Known pixels sampled for the global regression of an extra band on the model bands.
FIT_SAMPLES = 200_000
# Ridge term of the global regression (on the 0…1 scale; keeps collinear bands stable).
RIDGE = 1e-6
# Half-side (pixels) of the local fit of an extra band on its synthetic band (measured at 32,
# benchmarks/bands.py; guide dates use regression.GUIDE_RADIUS).
EXTRA_RADIUS = 32


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
    return {
        "count": self.count,
        "model": [i + 1 for i in self.model],
        "extra": [i + 1 for i in self.extra],
        "passthrough": [i + 1 for i in self.passthrough],
        "extra_method": self.method if self.extra else None
    }


def layout_of(count: int,
              model: Sequence[int],
              mask_band: Optional[int] = None,
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


def fit_global(model: np.ndarray,
               extra: np.ndarray,
               known: np.ndarray,
               samples: int = FIT_SAMPLES,
               seed: int = 0) -> np.ndarray:
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


def guided_extra(extra: np.ndarray,
                 model: np.ndarray,
                 known: np.ndarray,
                 hole: np.ndarray,
                 coef: Optional[np.ndarray] = None,
                 radius: int = EXTRA_RADIUS) -> np.ndarray:
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
    g = regression.guided_fill(extra[:, :, e:e + 1],
                               valid,
                               synthetic,
                               guide_valid,
                               unguided=zeros,
                               radius=radius,
                               classes=0)
    out[:, :, e] = np.where(hole, g.fill[:, :, 0], extra[:, :, e])
  return out


def per_band_psnr(restored: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> list:
  """Hole PSNR (dB) of each band, both ``[H, W, C]`` on one 0…1 scale."""
  out = []
  for c in range(restored.shape[2]):
    d = restored[:, :, c][mask].astype(np.float64) - truth[:, :, c][mask].astype(np.float64)
    mse = float(np.mean(d * d)) if d.size else 0.0
    out.append(float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"))
  return out


def for_model_bands(spec, layout):
  """A guide's or neighbours' spec (anything with ``bands``) that reads the
  model's bands of an image whose model bands were chosen without ``--bands``
  (its first ones): the same bands of the other file, by number."""
  if spec is None or layout is None or getattr(spec, "bands", None):
    return spec
  return dataclasses.replace(spec, bands=tuple(i + 1 for i in layout.model))
