"""``cloudfill export`` is safe (issue 12.7): --out is required, an existing
model is never replaced without --overwrite, the version defaults to a hash of
the weights, and the incremental check compares that hash too."""

import json
import os

import numpy as np
import pytest

from model_loader import contract
from training import export


def test_out_is_required(capsys):
  with pytest.raises(SystemExit) as e:
    export.main(["--untrained"])
  assert e.value.code == 2 and "--out" in capsys.readouterr().err


def test_an_existing_model_is_not_replaced_without_overwrite(tmp_path, capsys):
  from model_loader.locate import DEFAULT_MODEL_DIR
  before = {f: os.path.getmtime(os.path.join(DEFAULT_MODEL_DIR, f)) for f in os.listdir(DEFAULT_MODEL_DIR)}
  assert export.main(["--untrained", "--out", DEFAULT_MODEL_DIR]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "already holds a model" in err and "--overwrite" in err
  assert before == {f: os.path.getmtime(os.path.join(DEFAULT_MODEL_DIR, f)) for f in os.listdir(DEFAULT_MODEL_DIR)}
  other = tmp_path / "notes"
  other.mkdir()
  (other / "x.txt").write_text("keep me")
  assert export.main(["--untrained", "--out", str(other)]) == 2
  assert (other / "x.txt").read_text() == "keep me"


def test_weights_hash_is_the_default_version_and_changes_with_the_weights(tiny_generator):
  from training.generator import build_generator
  h1 = export.weights_sha256(tiny_generator)
  assert h1 == export.weights_sha256(tiny_generator) and len(h1) == 64
  other = build_generator(bands=3, stem=8, widths=(8, 16, 16, 16))
  weights = other.get_weights()
  weights[0] = weights[0] + np.float32(1e-3)
  other.set_weights(weights)
  assert export.weights_sha256(other) != h1


@pytest.mark.slow
def test_export_writes_the_hash_into_the_card(tmp_path):
  out = tmp_path / "m"
  assert export.main(["--untrained", "--out", str(out), "--window", "64", "--overlap", "8"]) == 0
  card = contract.ModelCard.from_json((out / "assets" / contract.ASSET_NAME).read_text())
  assert len(card.weights_sha256) == 64 and card.version == "w" + card.weights_sha256[:12]
  assert export.main(["--untrained", "--out", str(out)]) == 2  # Now it exists.
  assert export.main(
      ["--untrained", "--out",
       str(out), "--overwrite", "--version", "2.0", "--window", "64", "--overlap", "8"]) == 0
  card2 = json.loads((out / "assets" / contract.ASSET_NAME).read_text())
  assert card2["version"] == "2.0" and card2["weights_sha256"] != card.weights_sha256


def test_incremental_check_compares_the_weights_hash(tmp_path):
  """A real GeoTIFF output made by other weights under the same version is not up to date."""
  from transforms.incremental import TAG_WEIGHTS, is_up_to_date, output_path, provenance_tags
  from transforms.atomic_write import write_bytes_atomic
  from transforms.raster_io import encode_raster
  from transforms.records import TilePair
  pair = TilePair(image_path=str(tmp_path / "in" / "a.tif"), stem="a", mask_path=None, mtime=100.0)
  profile = {
      "ext": ".tif",
      "dtype": "uint16",
      "nodata": None,
      "crs": None,
      "transform": None,
      "descriptions": [None] * 3,
      "tags": {}
  }
  tags = provenance_tags(pair, "1.0", "a" * 64)
  assert tags[TAG_WEIGHTS] == "a" * 64
  write_bytes_atomic(output_path(str(tmp_path / "out"), pair.image_path),
                     encode_raster(np.zeros((8, 8, 3), np.uint16), profile, tags))
  out = str(tmp_path / "out")
  assert is_up_to_date(pair, out, "1.0", "a" * 64)
  assert not is_up_to_date(pair, out, "1.0", "b" * 64)
  assert is_up_to_date(pair, out, "1.0")  # A card without a hash compares the version only.
  assert not is_up_to_date(pair, out, "2.0", "a" * 64)
