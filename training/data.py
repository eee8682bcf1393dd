"""The ``tf.data`` input pipeline: random crops of scenes with hole masks.

Scenes are read once, in parallel (:func:`training.scenes.read_scenes`), and
kept in memory (the whole of ``/work/shared/data`` is ~100 MB as float32).
Each element is drawn by a pure function of ``(seed, index)``, so a run is
reproducible and resumable, and elements are produced in parallel by
``map(..., num_parallel_calls=AUTOTUNE, deterministic=True)``.

Augmentations: random crop from the training area, horizontal/vertical flip,
rot90, random band permutation (the model standardises each band of each
tile by its known pixels, so band order and per-band gain/offset carry no
information; the per-tile normalisation itself lives *inside* the model so
that serving needs no preprocessing).

Elements: ``(image [S, S, C] float32 0…1, mask [S, S, 1] float32 1=hole)``.
"""

from __future__ import annotations

import collections
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from training.masks import MaskGenerator, cloud_mask_files
from training.scenes import Scene, crop_origins, list_rasters, read_scenes


class TileSampler:
  """Draws ``(image, mask)`` crops from scenes.

  Args:
    scenes: Scenes in memory.
    size: Crop side.
    masks: Mask generator.
    split: "train" or "val" area.
    augment: Flips, rot90 and band permutation.
  """

  def __init__(self, scenes: Sequence[Scene], size: int, masks: MaskGenerator,
               split: str = "train", augment: bool = True):
    self.size, self.masks, self.augment = size, masks, augment
    self.scenes, self.origins, weights = [], [], []
    groups = collections.Counter(os.path.dirname(s.path) for s in scenes)
    for s in scenes:
      o = crop_origins(s.valid, size, split)
      if len(o):
        self.scenes.append(s)
        self.origins.append(o)
        # sqrt(area) per scene, shared among dates of the same place.
        weights.append(np.sqrt(len(o)) / groups[os.path.dirname(s.path)])
    if not self.scenes:
      raise ValueError(f"no {size}x{size} {split} crops in any scene")
    w = np.array(weights)
    self.p = w / w.sum()
    self.bands = self.scenes[0].image.shape[-1]

  def sample(self, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The element number ``index`` of the stream ``seed``."""
    rng = np.random.default_rng([seed, index])
    k = int(rng.choice(len(self.scenes), p=self.p))
    s, o = self.scenes[k], self.origins[k]
    y, x = o[int(rng.integers(len(o)))]
    if self.augment:  # jitter inside the 8-px origin grid
      y = min(y + int(rng.integers(8)), s.image.shape[0] - self.size)
      x = min(x + int(rng.integers(8)), s.image.shape[1] - self.size)
      if not s.valid[y:y + self.size, x:x + self.size].all():
        y, x = o[int(rng.integers(len(o)))]
    img = s.image[y:y + self.size, x:x + self.size]
    if self.augment:
      if rng.random() < 0.5:
        img = img[:, ::-1]
      if rng.random() < 0.5:
        img = img[::-1]
      img = np.rot90(img, int(rng.integers(4)))
      if rng.random() < 0.5:
        img = img[..., rng.permutation(img.shape[-1])]
    mask = self.masks.sample(rng, self.size, self.size)
    return (np.ascontiguousarray(img, np.float32),
            mask[..., None].astype(np.float32))


def make_dataset(sampler: TileSampler, batch: int, seed: int = 0,
                 start: int = 0) -> tf.data.Dataset:
  """An endless batched dataset of ``(image, mask)``.

  Args:
    sampler: Where elements come from.
    batch: Batch size.
    seed: Stream seed.
    start: First element index (to resume a run where it stopped).
  """
  s, c = sampler.size, sampler.bands

  def draw(i):
    img, m = tf.numpy_function(lambda j: sampler.sample(seed, int(j)), [i],
                               [tf.float32, tf.float32], stateful=False)
    img.set_shape([s, s, c])
    m.set_shape([s, s, 1])
    return img, m

  ds = tf.data.Dataset.range(start, 2 ** 62)
  ds = ds.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def fixed_set(sampler: TileSampler, n: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
  """``n`` reproducible elements stacked: ``([n,S,S,C], [n,S,S,1])``."""
  pairs = [sampler.sample(seed, i) for i in range(n)]
  return (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))


def build_samplers(data: str | Sequence[str], bands: int, crop: int,
                   val_size: int, cloud_dir: Optional[str] = None,
                   ) -> tuple[TileSampler, TileSampler, list[str]]:
  """Training and validation samplers for a data folder.

  Training masks use the training cloud-mask files, validation masks the
  held-out ones (:func:`training.masks.cloud_mask_files`).

  Returns:
    ``(train_sampler, val_sampler, files)``.
  """
  files = list_rasters(data)
  scenes = [s for s in read_scenes(files, bands)]
  train_masks = MaskGenerator(cloud_mask_files(cloud_dir, "train")
                              if cloud_dir else ())
  val_masks = MaskGenerator(cloud_mask_files(cloud_dir, "val")
                            if cloud_dir else (), weights={"clouds": 1.0}
                            if cloud_dir else None)
  train = TileSampler(scenes, crop, train_masks, "train")
  val = TileSampler(scenes, val_size, val_masks, "val", augment=False)
  used = [s.path for s in train.scenes]
  return train, val, used


def representative_tiles(data: str, bands: int, window: int, n: int,
                         seed: int = 1234) -> list[tuple[np.ndarray,
                                                         np.ndarray]]:
  """``n`` training-area tiles with masks, each ``[1, W, W, C]``/``[1, W, W, 1]``
  (INT8 calibration)."""
  cloud_dir = os.path.join(data, "cloud_masks")
  masks = MaskGenerator(cloud_mask_files(cloud_dir, "train")
                        if os.path.isdir(cloud_dir) else ())
  sampler = TileSampler(read_scenes(list_rasters(data), bands), window, masks,
                        "train")
  return [tuple(a[None] for a in sampler.sample(seed, i)) for i in range(n)]
