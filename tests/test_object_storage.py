"""gs:// and s3:// end to end, against real protocol servers on loopback."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from pipeline import cli
from tests.conftest import SAMPLE
from tests.servers import gcs_emulator, s3_server, upload_tree

pytestmark = pytest.mark.slow


def _fetch(uri: str) -> bytes:
  from apache_beam.io.filesystems import FileSystems
  with FileSystems.open(uri, compression_type="uncompressed") as f:
    return f.read()


def _check_outputs(base: str, n: int):
  from apache_beam.io.filesystems import FileSystems
  from transforms.raster_io import decode_raster
  summary = json.loads(_fetch(base + "/out/summary.json"))
  assert summary["counts"] == {"restored": n, "skipped": 0, "failed": 0}
  restored = FileSystems.match([base + "/out/restored/*"])[0].metadata_list
  assert len(restored) == n
  assert FileSystems.match([base + "/out/metrics/*.jsonl"])[0].metadata_list
  for meta in restored:
    name = meta.path.rsplit("/", 1)[1]
    got, prof = decode_raster(_fetch(meta.path), ".tif")
    with open(os.path.join(SAMPLE, "images", name), "rb") as f:
      src, sprof = decode_raster(f.read(), ".tif")
    from PIL import Image
    mask = np.asarray(Image.open(os.path.join(SAMPLE, "masks", name.replace(".tif", ".png")))) > 0
    np.testing.assert_array_equal(got[~mask], src[~mask])
    assert prof["crs"] == sprof["crs"] and prof["transform"] == sprof["transform"]


def _stage_inputs(tmp_path, base: str, n: int = 2):
  local = tmp_path / "stage"
  (local / "images").mkdir(parents=True)
  (local / "masks").mkdir()
  for p in sorted(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))[:n]:
    stem = os.path.splitext(os.path.basename(p))[0]
    (local / "images" / f"{stem}.tif").write_bytes(open(p, "rb").read())
    (local / "masks" / f"{stem}.png").write_bytes(open(os.path.join(SAMPLE, "masks", f"{stem}.png"), "rb").read())
  upload_tree(str(local), base)


def test_gcs_end_to_end(tmp_path, mean_model):
  with gcs_emulator("cf-gcs"):
    base = "gs://cf-gcs/run1"
    _stage_inputs(tmp_path, base)
    status = cli.main([
        "run", "--images", base + "/images/*.tif", "--masks", base + "/masks/{stem}.png", "--output", base + "/out",
        "--model", mean_model, "--no-report"
    ])
    assert status == 0
    _check_outputs(base, 2)
    # A second run skips both: the objects' times (input, mask, output) are read from the bucket.
    argv = [
        "run", "--images", base + "/images/*.tif", "--masks", base + "/masks/{stem}.png", "--output", base + "/out",
        "--model", mean_model, "--no-report"
    ]
    assert cli.main(argv) == 0
    assert json.loads(_fetch(base + "/out/summary.json"))["counts"] == {"restored": 0, "skipped": 2, "failed": 0}


def test_s3_end_to_end(tmp_path, mean_model):
  with s3_server("cf-s3") as s3:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
    FileSystems.set_options(PipelineOptions(s3["beam_args"]))
    base = "s3://cf-s3/run1"
    _stage_inputs(tmp_path, base)
    status = cli.main([
        "run", "--images", base + "/images/*.tif", "--masks", base + "/masks/{stem}.png", "--output", base + "/out",
        "--model", mean_model, "--no-report", *s3["beam_args"]
    ])
    assert status == 0
    _check_outputs(base, 2)
