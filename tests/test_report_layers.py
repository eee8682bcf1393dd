"""The report's drawing (issue 12.8): the restored area outlined on "after",
a stretch that never uses no-data, the provenance layer, large-scene previews."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from pipeline import report, report_layers
from tests.helpers import write_geotiff
from transforms import provenance
from transforms.atomic_write import write_bytes_atomic
from transforms.raster_io import split_ext


def _png_array(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_outline_is_the_one_pixel_border():
  mask = np.zeros((10, 10), bool)
  mask[2:7, 3:8] = True
  ring = report_layers.outline(mask)
  assert ring.sum() == 5 * 5 - 3 * 3 and ring[2, 3] and not ring[4, 5] and not ring[0, 0]


def test_stretch_leaves_out_no_data_and_generated_pixels():
  image = np.full((20, 20, 3), 1000, np.uint16)
  image[:, :10] = 0  # An undeclared fill border.
  image[10:, 10:] = 5000  # Generated pixels.
  image[:10, 10:15] = 2000
  changed = np.zeros((20, 20), bool)
  changed[10:, 10:] = True
  valid = report_layers.stretch_pixels(image, changed, None)
  assert not valid[:, :10].any() and not valid[10:, 10:].any() and valid[:10, 10:].all()
  lo, hi = report.stretch(image, valid)
  assert lo.min() >= 1000 and hi.max() <= 2000
  declared = report_layers.stretch_pixels(image, changed, 1000.0)
  assert not declared[:10, 15:].any() and declared[:, :10].all()  # Declared no-data only.


def test_thumbnails_outline_after_show_provenance_and_scene_previews(tmp_path):
  run = tmp_path / "run"
  rng = np.random.default_rng(0)
  image = rng.integers(5000, 9000, (64, 64, 3), dtype=np.uint16)
  image[:, :8] = 0
  mask = np.zeros((64, 64), bool)
  mask[20:40, 20:44] = True
  out = image.copy()
  out[mask] = 7000
  src = write_geotiff(str(tmp_path / "in" / "t.tif"), image, nodata=0)
  dst = write_geotiff(str(run / "restored" / "t.tif"), out, nodata=0)
  classes = provenance.derive(out, mask, 0)
  write_bytes_atomic(provenance.provenance_path(str(run), split_ext(src)[0]), provenance.encode(classes, {}))
  row = {"path": src, "output": dst, "stem": "t", "outcome": "restored", "metrics": {}}
  t = report.make_thumbnails(row, output_dir=str(run))
  after = _png_array(t["after"])
  ring = report_layers.outline(mask)
  assert (after[ring] == report_layers.OUTLINE_RGB).all()
  assert not (after[~mask] == report_layers.OUTLINE_RGB).all(axis=1).any()
  prov = _png_array(t["provenance"])
  assert (prov[mask] == provenance.COLORMAP[1][:3]).all() and (prov[:, :8] == 255).all()
  # The stretch comes from observed pixels: the 0 border does not darken the picture.
  assert _png_array(t["before"])[~mask][:, 0].astype(int).mean() > 60
  scene_row = dict(row, stem="big", metrics={"scene": True})
  preview = np.zeros((30, 50, 3), np.uint8)
  preview[:, :, 1] = 200
  buf = io.BytesIO()
  Image.fromarray(preview).save(buf, format="PNG")
  write_bytes_atomic(os.path.join(str(run), "preview", "big.png"), buf.getvalue())
  s = report.make_thumbnails(scene_row, output_dir=str(run))
  assert s["before"] is None and s["after"] == buf.getvalue() and s["shape"] == (30, 50)
