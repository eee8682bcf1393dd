"""transforms.atomic_write: single files atomic, an output and its provenance written together."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from tests.helpers import cloud_mask, write_png
from tests.servers import gcs_emulator
from transforms import atomic_write, provenance


def test_a_failed_local_write_changes_none_of_the_files_and_leaves_no_temporary(tmp_path, monkeypatch):
  a, b = str(tmp_path / "a.tif"), str(tmp_path / "sub" / "b.tif")
  atomic_write.write_all_atomic([(a, b"old a"), (b, b"old b")])
  assert open(a, "rb").read() == b"old a" and open(b, "rb").read() == b"old b"
  stage = atomic_write._stage_local  # pylint: disable=protected-access

  def full_on_b(path, data):
    if path == b:
      # What the real staging does on a full disk: its write fails and it removes its temporary.
      tmp = stage(path, data)
      os.remove(tmp)
      raise OSError(errno.ENOSPC, "No space left on device")
    return stage(path, data)

  monkeypatch.setattr(atomic_write, "_stage_local", full_on_b)
  with pytest.raises(OSError, match="No space left"):
    atomic_write.write_all_atomic([(a, b"new a"), (b, b"new b")])
  assert open(a, "rb").read() == b"old a" and open(b, "rb").read() == b"old b"
  assert sorted(os.listdir(tmp_path)) == ["a.tif", "sub"] and os.listdir(tmp_path / "sub") == ["b.tif"]


def test_a_rename_that_fails_leaves_no_temporary(tmp_path, caplog):
  a, b = str(tmp_path / "a.tif"), str(tmp_path / "b.tif")
  os.mkdir(b)  # the output's name is taken by a folder: its rename fails
  with pytest.raises(OSError):
    atomic_write.write_all_atomic([(a, b"new a"), (b, b"new b")])
  assert open(a, "rb").read() == b"new a"  # renamed before the failure, as documented
  assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.tif"] and os.listdir(b) == []
  assert "could not remove" not in caplog.text


def test_staging_that_fails_mid_write_removes_its_temporary(tmp_path, monkeypatch):
  path = str(tmp_path / "x.tif")

  class Broken:

    def __init__(self, *args):
      self._f = open(*args)  # pylint: disable=unspecified-encoding

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self._f.close()

    def write(self, data):
      self._f.write(data[:3])
      raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(atomic_write, "open", Broken, raising=False)
  with pytest.raises(OSError, match="No space left"):
    atomic_write.write_bytes_atomic(path, b"complete bytes")
  assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_on_object_storage_a_failed_upload_deletes_the_objects_uploaded_before_it():
  from apache_beam.io.filesystems import FileSystems
  with gcs_emulator("cf-atomic"):
    good, bad = "gs://cf-atomic/out/provenance/t.tif", "gs://no-such-bucket-cf/out/restored/t.tif"
    with pytest.raises(Exception):
      atomic_write.write_all_atomic([(good, b"provenance"), (bad, b"output")])
    assert not FileSystems.exists(good)
    atomic_write.write_all_atomic([(good, b"provenance"), ("gs://cf-atomic/out/restored/t.tif", b"output")])
    with FileSystems.open("gs://cf-atomic/out/restored/t.tif", compression_type="uncompressed") as f:
      assert f.read() == b"output"
    assert FileSystems.exists(good)


def test_an_output_that_fails_to_write_leaves_the_previous_output_and_provenance(tmp_path, monkeypatch):
  """Disk full while writing a tile's output: the tile is dead-lettered at
  ``write``, and the previous run's output and provenance are both as they were
  (before, the new provenance was left beside the old output)."""
  from transforms.decode import DecodeSpec, decode_pair
  from transforms.masks import MaskSpec
  from transforms.records import DeadLetter, RestoredTile, TilePair, TileResult
  from transforms.write import WriteSpec, WriteTiles
  img = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
  write_png(str(tmp_path / "t.png"), img)
  write_png(str(tmp_path / "t_mask.png"), cloud_mask(32, 32, seed=2).astype(np.uint8) * 255)
  tile = decode_pair(TilePair(str(tmp_path / "t.png"), "t", str(tmp_path / "t_mask.png")), DecodeSpec(mask=MaskSpec()))
  spec = WriteSpec(output_dir=str(tmp_path / "out"), model_version="test")
  (first,) = WriteTiles(spec).process(RestoredTile(tile=tile, restored=tile.image))
  assert isinstance(first, TileResult)
  prov = provenance.provenance_path(spec.output_dir, tile.pair.stem)
  before = {p: open(p, "rb").read() for p in (first.output, prov)}

  stage = atomic_write._stage_local  # pylint: disable=protected-access

  def full_on_output(path, data):
    if path == first.output:
      raise OSError(errno.ENOSPC, "No space left on device")
    return stage(path, data)

  monkeypatch.setattr(atomic_write, "_stage_local", full_on_output)
  other = tile.image.copy()
  other[tile.mask] = 7  # another fill, now guided: another output and another provenance
  guided = np.where(tile.mask, provenance.GUIDED, provenance.OBSERVED).astype(np.uint8)
  (out,) = WriteTiles(spec).process(RestoredTile(tile=tile, restored=other, provenance=guided))
  letter = out.value
  assert isinstance(letter, DeadLetter) and letter.stage == "write" and "No space left" in letter.reason
  assert {p: open(p, "rb").read() for p in before} == before
  for folder in ("restored", "provenance"):
    assert not [n for n in os.listdir(tmp_path / "out" / folder) if n.endswith(".tmp")]
