"""Classical gap fillers, all with one signature.

``fill(image, mask) -> filled``: ``image`` float32 ``[H, W, C]`` (0…1 in the
benchmark), ``mask`` bool ``[H, W]`` with True = missing; returns float32
``[H, W, C]`` (known pixels unchanged).

* ``gdal_fillnodata``: GDAL FillNodata (inverse-distance search + smoothing)
  through ``rasterio.fill.fillnodata``, per band.
* ``opencv_telea`` / ``opencv_ns``: OpenCV Telea and Navier-Stokes
  inpainting, per band at 16 bits (``cv2.inpaint`` takes 8-bit or, for
  single-channel images, 16-bit input).
* ``skimage_biharmonic``: scikit-image biharmonic inpainting
  (``channel_axis=-1``).
* ``mean_fill``: each band's mean of the known pixels.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from transforms import context


def _finish(image, mask, out):
  out = np.asarray(out, np.float32)
  out[~mask] = image[~mask]
  return out


def gdal_fillnodata(image: np.ndarray,
                    mask: np.ndarray,
                    max_search_distance: float = 1000.0,
                    smoothing_iterations: int = 0) -> np.ndarray:
  """GDAL FillNodata via rasterio, per band."""
  from rasterio.fill import fillnodata
  valid = (~mask).astype(np.uint8)
  out = np.stack([
      fillnodata(image[..., c].astype(np.float32).copy(),
                 mask=valid,
                 max_search_distance=max_search_distance,
                 smoothing_iterations=smoothing_iterations) for c in range(image.shape[-1])
  ], -1)
  return _finish(image, mask, out)


def _cv2_inpaint(image, mask, flag, radius=5):
  import cv2
  m8 = mask.astype(np.uint8)
  out = np.empty_like(image, dtype=np.float32)
  for c in range(image.shape[-1]):
    band = image[..., c]
    lo, hi = float(band[~mask].min(initial=0)), float(band[~mask].max(initial=1))
    scale = max(hi - lo, 1e-6)
    b16 = np.round((np.clip(band, lo, hi) - lo) / scale * 65535).astype(np.uint16)
    r = cv2.inpaint(b16, m8, radius, flag)
    out[..., c] = r.astype(np.float32) / 65535 * scale + lo
  return _finish(image, mask, out)


def opencv_telea(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """OpenCV Telea (fast marching) inpainting, per band, 16-bit."""
  import cv2
  return _cv2_inpaint(image, mask, cv2.INPAINT_TELEA)


def opencv_ns(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """OpenCV Navier-Stokes inpainting, per band, 16-bit."""
  import cv2
  return _cv2_inpaint(image, mask, cv2.INPAINT_NS)


def skimage_biharmonic(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """scikit-image biharmonic inpainting (all bands at once)."""
  from skimage.restoration import inpaint_biharmonic
  return _finish(image, mask, inpaint_biharmonic(image, mask, channel_axis=-1))


def mean_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Each band's mean over the known pixels."""
  out = image.astype(np.float32).copy()
  if (~mask).any():
    out[mask] = image[~mask].mean(0)
  return out


def push_pull(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """cloudfill's own classical context (:func:`transforms.context.push_pull`):
  what the model corrects, so "model minus push_pull" is the network's gain."""
  return _finish(image, mask, context.push_pull(image.astype(np.float32), (~mask).astype(np.float32)))


FILLERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "push_pull": push_pull,
    "gdal_fillnodata": gdal_fillnodata,
    "opencv_telea": opencv_telea,
    "opencv_ns": opencv_ns,
    "skimage_biharmonic": skimage_biharmonic,
    "mean_fill": mean_fill,
}
