"""Hole (cloud) masks for training and benchmarking.

Kinds: free-form ``strokes`` (DeepFill v2 style), smooth ``blobs``, ``edge``
fragments attached to a tile side, thin ``scratches`` and real ``clouds``
(shapes cut from binary cloud masks, 255 = cloud, e.g.
``/work/shared/data/cloud_masks/``: resized, rotated, flipped, then grown or
shrunk along their signed distance to hit the drawn coverage). Coverage is
drawn uniformly in ``coverage`` (default 1–60 %).

The real masks are split by file so benchmark masks are never trained on:
``ukis_landsat7.png`` and ``eolearn_clm/clm_50`` … ``clm_67`` are the
validation masks (:func:`cloud_mask_files`).

All masks are float32 ``[H, W]`` with 1 = missing.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Optional, Sequence

import numpy as np


def _cv2():
  """OpenCV (the ``train`` extra), imported when a mask is first drawn or read,
  so that ``cloudfill export`` (which imports this module) does not need it."""
  import cv2  # pylint: disable=import-outside-toplevel
  cv2.setNumThreads(1)  # one thread per data worker process
  return cv2


KINDS = ("clouds", "strokes", "blobs", "edge", "scratches")
DEFAULT_WEIGHTS = {"clouds": 0.45, "strokes": 0.15, "blobs": 0.2, "edge": 0.1, "scratches": 0.1}


def _is_val_mask(path: str) -> bool:
  name = os.path.basename(path)
  if name == "ukis_landsat7.png":
    return True
  m = re.match(r"clm_(\d+)\.png$", name)
  return bool(m) and int(m.group(1)) >= 50


def cloud_mask_files(cloud_dir: str, split: str = "train") -> list[str]:
  """Real cloud-mask PNGs under ``cloud_dir`` for ``split``.

  Args:
    cloud_dir: Folder searched recursively for ``*.png``.
    split: ``"train"``, ``"val"`` or ``"all"``.

  Returns:
    Sorted paths.
  """
  files = sorted(glob.glob(os.path.join(cloud_dir, "**", "*.png"), recursive=True))
  if split == "all":
    return files
  want_val = split == "val"
  return [f for f in files if _is_val_mask(f) == want_val]


def fit_coverage(shape_mask: np.ndarray, coverage: float, rng: np.random.Generator) -> np.ndarray:
  """Grows or shrinks a binary shape along its signed distance.

  Args:
    shape_mask: Boolean ``[H, W]`` shape (True = hole).
    coverage: Wanted hole fraction (0…1).
    rng: Random generator (tie-breaking noise).

  Returns:
    Boolean mask whose hole fraction is ``coverage`` (to one pixel).
  """
  cv2 = _cv2()
  m = shape_mask.astype(np.uint8)
  if m.all() or not m.any():
    field = rng.random(m.shape)
  else:
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    field = inside - outside + rng.random(m.shape) * 1e-3
  k = int(round(coverage * m.size))
  if k <= 0:
    return np.zeros(m.shape, bool)
  thr = np.partition(field.ravel(), m.size - k)[m.size - k]
  return field >= thr


def _smooth_noise(rng, h, w, cells):
  cv2 = _cv2()
  g = rng.standard_normal((cells, cells)).astype(np.float32)
  return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _blobs(rng, h, w, cov):
  field = _smooth_noise(rng, h, w, int(rng.integers(2, 9)))
  field += 0.3 * _smooth_noise(rng, h, w, int(rng.integers(8, 24)))
  k = max(1, int(round(cov * h * w)))
  thr = np.partition(field.ravel(), h * w - k)[h * w - k]
  return field >= thr


def _edge(rng, h, w, cov):
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  side = int(rng.integers(4))
  d = [yy / h, 1 - yy / h, xx / w, 1 - xx / w][side]
  field = -d + 0.15 * _smooth_noise(rng, h, w, int(rng.integers(3, 10)))
  k = max(1, int(round(cov * h * w)))
  thr = np.partition(field.ravel(), h * w - k)[h * w - k]
  return field >= thr


def _strokes(rng, h, w, cov, thin=False):
  cv2 = _cv2()
  m = np.zeros((h, w), np.uint8)
  s = min(h, w)
  for _ in range(400):
    if m.mean() >= cov:
      break
    if thin:
      p0 = rng.integers(0, [w, h])
      ang = rng.uniform(0, np.pi)
      length = rng.uniform(0.3, 1.5) * s
      p1 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
      cv2.line(m, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, int(rng.integers(1, 4)))
      continue
    width = int(rng.integers(max(2, s // 40), max(3, s // 8)))
    p = rng.integers(0, [w, h]).astype(np.float64)
    ang = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(3, 10))):
      ang += rng.uniform(-1.2, 1.2)
      step = rng.uniform(0.05, 0.25) * s
      q = np.clip(p + step * np.array([np.cos(ang), np.sin(ang)]), 0, [w - 1, h - 1])
      cv2.line(m, tuple(int(v) for v in p), tuple(int(v) for v in q), 1, width)
      cv2.circle(m, tuple(int(v) for v in q), width // 2, 1, -1)
      p = q
  return m.astype(bool)


class MaskGenerator:
  """Draws hole masks (1 = missing) of a random kind and coverage.

  Args:
    cloud_files: Real cloud-mask PNGs (255 = cloud), or boolean ``[H, W]``
      arrays of them (a training bundle); without any, the ``clouds`` kind
      is dropped.
    coverage: ``(low, high)`` hole fraction range, drawn uniformly.
    weights: Probability of each kind (see :data:`KINDS`).
  """

  def __init__(self,
               cloud_files: Sequence[str] = (),
               coverage: tuple[float, float] = (0.01, 0.6),
               weights: Optional[dict[str, float]] = None):
    self.coverage = coverage
    cv2 = _cv2() if any(not isinstance(f, np.ndarray) for f in cloud_files) else None
    self.clouds = [
        np.asarray(f, bool) if isinstance(f, np.ndarray) else cv2.imread(f, cv2.IMREAD_GRAYSCALE) > 127
        for f in cloud_files
    ]
    self.clouds = [c for c in self.clouds if 0.002 < c.mean() < 0.998]
    w = dict(weights or DEFAULT_WEIGHTS)
    if not self.clouds:
      w.pop("clouds", None)
    self.kinds = [k for k in KINDS if w.get(k, 0) > 0]
    p = np.array([w[k] for k in self.kinds], np.float64)
    self.p = p / p.sum()

  def cloud_shape(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A real cloud shape, randomly cropped, rotated, flipped and resized."""
    cv2 = _cv2()
    for _ in range(20):
      src = self.clouds[int(rng.integers(len(self.clouds)))]
      sh, sw = src.shape
      frac = rng.uniform(0.35, 1.0)
      ch, cw = max(8, int(sh * frac)), max(8, int(sw * frac))
      y0 = int(rng.integers(0, sh - ch + 1))
      x0 = int(rng.integers(0, sw - cw + 1))
      crop = src[y0:y0 + ch, x0:x0 + cw].astype(np.float32)
      if rng.random() < 0.5:
        crop = crop[:, ::-1]
      crop = np.rot90(crop, int(rng.integers(4)))
      img = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)
      ang = rng.uniform(0, 360)
      rot = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
      img = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
      m = img > 0.5
      if 0.002 < m.mean() < 0.998:
        return m
    return _blobs(rng, h, w, 0.3)

  def sample(self,
             rng: np.random.Generator,
             h: int,
             w: int,
             kind: Optional[str] = None,
             coverage: Optional[float] = None) -> np.ndarray:
    """Draws one mask.

    Args:
      rng: Random generator.
      h: Height.
      w: Width.
      kind: Force a kind (default: drawn with the weights).
      coverage: Force a coverage (default: drawn uniformly in range).

    Returns:
      float32 ``[h, w]``, 1 = missing.
    """
    lo, hi = self.coverage
    cov = float(rng.uniform(lo, hi)) if coverage is None else coverage
    kind = kind or self.kinds[int(rng.choice(len(self.kinds), p=self.p))]
    if kind == "clouds":
      m = fit_coverage(self.cloud_shape(rng, h, w), cov, rng)
    elif kind == "blobs":
      m = _blobs(rng, h, w, cov)
    elif kind == "edge":
      m = _edge(rng, h, w, cov)
    elif kind == "strokes":
      m = _strokes(rng, h, w, cov)
    elif kind == "scratches":
      m = _strokes(rng, h, w, cov, thin=True)
    else:
      raise ValueError(f"unknown mask kind {kind!r}")
    got = m.mean()
    if coverage is None and not lo <= got <= hi:
      m = fit_coverage(m, float(np.clip(got, lo, hi)), rng)
    elif coverage is not None and abs(got - cov) > 0.02:
      m = fit_coverage(m, cov, rng)
    return m.astype(np.float32)
