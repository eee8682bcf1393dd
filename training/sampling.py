"""The training and validation samplers, built from a data folder or a bundle.

:func:`sampler` is a picklable factory (by name and plain arguments), so each
data worker process of :func:`training.data.batches` builds its own; export
uses it for the INT8 calibration set.
"""

from __future__ import annotations

import os

from training import bundle
from training import data as D
from training.masks import MaskGenerator, cloud_mask_files
from training.scenes import list_rasters, read_scenes


def sampler(data: str,
            bands: int,
            crop: int,
            region: int,
            split: str,
            guided_only: bool = False,
            seed_masks: str = "train") -> D.Sampler:
  """The :class:`training.data.Sampler` of ``split`` (``train`` or ``val``).

  Args:
    data: A folder of rasters (with ``cloud_masks/`` inside) or a bundle ``.npz``.
    bands: Bands per sample.
    crop: Sample side in pixels.
    region: Context region side (``train``; default twice ``crop``).
    split: ``train`` (augmented, synthetic and real masks) or ``val``
      (held-out strip, real cloud masks only).
    guided_only: Only places with two dates or more (guided validation).
    seed_masks: Which cloud-mask files: ``train`` or ``val``.
  """
  if data.endswith(".npz"):
    scenes, clouds = bundle.load(data)
    masks = clouds[seed_masks]
  else:
    files = [f for f in list_rasters(data) if bundle._keep(f)]  # pylint: disable=protected-access
    scenes = read_scenes(files)
    for s in scenes:
      s.path = os.path.relpath(s.path, data)
    masks = cloud_mask_files(os.path.join(data, "cloud_masks"), seed_masks)
  places = D.group_places(scenes)
  if guided_only:
    places = [p for p in places if len(p.scenes) > 1]
  if split == "train":
    return D.Sampler(places, crop, MaskGenerator(masks), "train", bands=bands, region=region or 2 * crop)
  return D.Sampler(places,
                   crop,
                   MaskGenerator(masks, weights={"clouds": 1.0}),
                   "val",
                   bands=bands,
                   region=crop,
                   augment=False,
                   p_guide=1.0 if guided_only else 0.0)
