"""The block metric: window-sized squares of different tones read well above 1, seamless fills about 1.

Fills are assembled by the pipeline's own cutter and compositor
(:func:`transforms.window.cut`, :func:`transforms.composite.composite`), so the
blend zones are the ones a real run produces.
"""

import numpy as np
import pytest
from scipy import ndimage

from transforms import metrics
from transforms.composite import composite, sparsify
from transforms.records import Tile, TilePair
from transforms.window import WindowSpec, cut, to_unit


def _field(h, w, seed=0, sigma=20.0):
  """A smooth 0…1 field ``[h, w, 3]`` (stands in for a fill: fills of large clouds are smooth)."""
  rng = np.random.default_rng(seed)
  f = ndimage.gaussian_filter(rng.standard_normal((h, w, 3)), (sigma, sigma, 0))
  f = (f - f.min()) / (f.max() - f.min())
  return (0.4 + 0.2 * f).astype(np.float32)


def _cloud(h, w):
  """One large cloud (an ellipse) over most of the tile, plus a small one."""
  yy, xx = np.mgrid[:h, :w]
  m = ((yy - h / 2) / (0.42 * h))**2 + ((xx - w / 2) / (0.42 * w))**2 < 1
  m |= (yy - 40)**2 + (xx - 40)**2 < 25**2
  return m


def _restore(truth, mask, spec, per_window):
  """Runs the cutter and compositor with ``per_window(window) -> [size, size, 3]`` as the model."""
  img = np.rint(truth * 65535).astype(np.uint16)
  tile = Tile(pair=TilePair("t.tif", "t", None), image=img, mask=mask, profile={"dtype": "uint16", "nodata": None})
  results = []
  for k, win in enumerate(cut(tile, spec)):
    win.restored = per_window(k, win).astype(np.float32)
    results.append(sparsify(win, spec.overlap))
  return to_unit(composite(img, mask, results), 0, 65535)


@pytest.mark.parametrize("size,overlap", [(256, 32), (128, 0)])
def test_seamless_fill_reads_about_one(size, overlap):
  h, w = 700, 650
  truth, mask = _field(h, w), _cloud(h, w)
  spec = WindowSpec(size=size, overlap=overlap)
  # Every window returns the true ground: the fill is seamless by construction.
  out = _restore(
      truth, mask, spec, lambda k, win: np.pad(truth[win.y:win.y + size, win.x:win.x + size], (
          (0, size - min(size, h - win.y)), (0, size - min(size, w - win.x)), (0, 0))))
  score = metrics.block_score(out, mask, size, overlap)
  assert score is not None and 0.85 < score < 1.15, score


@pytest.mark.parametrize("size,overlap", [(256, 32), (128, 0)])
def test_window_sized_tones_read_well_above_one(size, overlap):
  h, w = 700, 650
  truth, mask = _field(h, w), _cloud(h, w)
  spec = WindowSpec(size=size, overlap=overlap)
  tones = np.random.default_rng(3).uniform(-0.08, 0.08, 64)
  # The ground's texture, but each window shifted by its own tone (today's failure).
  out = _restore(
      truth, mask, spec, lambda k, win: np.clip(
          np.pad(truth[win.y:win.y + size, win.x:win.x + size],
                 ((0, size - min(size, h - win.y)), (0, size - min(size, w - win.x)), (0, 0))) + tones[k], 0, 1))
  score = metrics.block_score(out, mask, size, overlap)
  assert score is not None and score > 1.5, score


def test_a_black_window_reads_well_above_one():
  h, w = 700, 650
  truth, mask = _field(h, w), _cloud(h, w)
  spec = WindowSpec(size=256, overlap=32)
  center = (h // 2 - 128, w // 2 - 128)

  def model(k, win):
    crop = truth[win.y:win.y + 256, win.x:win.x + 256]
    crop = np.pad(crop, ((0, 256 - crop.shape[0]), (0, 256 - crop.shape[1]), (0, 0)))
    near = abs(win.y - center[0]) < 130 and abs(win.x - center[1]) < 130
    return np.zeros_like(crop) if near else crop

  score = metrics.block_score(_restore(truth, mask, spec, model), mask, 256, 32)
  assert score is not None and score > 3, score


def test_stripes_add_up_to_about_the_whole():
  h, w = 700, 650
  truth, mask = _field(h, w, seed=5), _cloud(h, w)
  # Columns of windows alternate in tone by 0.03.
  out = np.where(mask[..., None], truth + 0.03 * (np.arange(w) // 224 % 2)[None, :, None], truth)
  whole = metrics.block_ratio(metrics.block_steps(out, mask, 256, 224))
  sums = {}
  for r0 in range(0, h, 300):
    r1 = min(h, r0 + 300)
    metrics.block_steps(out[r0:r1], mask[r0:r1], 256, 224, origin=(r0, 0), full_shape=(h, w), out=sums)
  striped = metrics.block_ratio(sums)
  assert whole > 1.3 and abs(striped - whole) / whole < 0.1, (whole, striped)


def test_no_border_inside_holes_gives_none():
  mask = np.zeros((200, 200), bool)
  mask[50:100, 50:100] = True
  assert metrics.block_score(_field(200, 200), mask, 256, 32) is None
  assert metrics.window_borders(200, 256, 224) == []


def test_shifted_grids_tell_blocks_from_a_noisy_reading():
  """A seamless fill reads about like the grids no window used; window tones read above every one of them."""
  h, w = 700, 650
  truth, mask = _field(h, w), _cloud(h, w)
  spec = WindowSpec(size=256, overlap=32)

  def crop(win):
    return np.pad(truth[win.y:win.y + 256, win.x:win.x + 256],
                  ((0, 256 - min(256, h - win.y)), (0, 256 - min(256, w - win.x)), (0, 0)))

  tones = np.random.default_rng(3).uniform(-0.08, 0.08, 64)
  seamless = _restore(truth, mask, spec, lambda k, win: crop(win))
  blocky = _restore(truth, mask, spec, lambda k, win: np.clip(crop(win) + tones[k], 0, 1))
  for out, blocks in ((seamless, False), (blocky, True)):
    score, controls = metrics.block_score(out, mask, 256, 32), metrics.block_controls(out, mask, 256, 32)
    assert len(controls) == 5 and all(0.7 < c < 1.3 for c in controls), controls
    assert (score > 1.3 * max(controls)) == blocks, (score, controls)


@pytest.mark.parametrize("shape", [(1300, 900), (512, 40), (513, 40), (3, 5)])
def test_hole_stats_counts_holes_by_rows_as_a_whole_count_would(shape):
  """Holes are counted over the labels a band of rows at a time (a streamed
  scene's labels are too large to cast at once); holes that cross the bands'
  edges are counted whole, the same as one count over the whole mask."""
  rng = np.random.default_rng(shape[0])
  mask = ndimage.binary_dilation(rng.random(shape) > 0.995, iterations=6) | (rng.random(shape) > 0.97)
  mask[:, 3] = True  # One hole down every band edge.
  labels, n = ndimage.label(mask, structure=metrics._FOUR)  # pylint: disable=protected-access
  sizes = np.bincount(labels.ravel())[1:]
  got = metrics.hole_stats(mask)
  assert got["holes"] == n
  assert got["largest_hole"] == sizes.max() and got["largest_hole"] >= shape[0]
  assert got["mean_hole"] == float(sizes.mean())
  assert got["missing_pixels"] == int(mask.sum()) == int(sizes.sum())
