"""``cloudfill serve``'s API on a real server on 127.0.0.1: same bytes as
``cloudfill run``, a 4xx with its reason for every bad input, limits, batching."""

from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import requests
from PIL import Image

from pipeline import cli
from tests.conftest import ROOT, SAMPLE
from tests.helpers import cloud_mask, read_raster, write_geotiff, write_png
from tests.serve_fixture import free_port, running

STEMS = ("LC08_224078_20200518_r300_c200", "LC08_224078_20200518_r800_c300")
MAX_PIXELS = 400 * 400


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  d = tmp_path_factory.mktemp("serve_root")
  for stem in STEMS:
    shutil.copy(os.path.join(SAMPLE, "images", stem + ".tif"), d / (stem + ".tif"))
    shutil.copy(os.path.join(SAMPLE, "masks", stem + ".png"), d / (stem + "_mask.png"))
  outside = tmp_path_factory.mktemp("outside")
  write_png(str(outside / "secret.png"), np.zeros((8, 8), np.uint8))
  os.symlink(outside / "secret.png", d / "link_out.png")
  return str(d)


@pytest.fixture(scope="module")
def server(root, mean_model):
  with running(mean_model, root=root, max_pixels=MAX_PIXELS, max_upload_bytes=4 << 20) as (url, svc):
    yield url, svc


def _files(root, stem, **extra):
  files = {
      "image": (stem + ".tif", open(os.path.join(root, stem + ".tif"), "rb").read()),
      "mask": ("m.png", open(os.path.join(root, stem + "_mask.png"), "rb").read())
  }
  files.update(extra)
  return files


def _png(array) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  return buf.getvalue()


def _tif(tmp_path, array, name="x.tif") -> bytes:
  return open(write_geotiff(str(tmp_path / name), array), "rb").read()


def _refused(resp, status, code):
  assert resp.status_code == status, resp.text
  body = resp.json()
  assert body["error"] == code and body["reason"], body
  return body["reason"]


def _pipeline_bytes(tmp_path, root, stem, model, *extra):
  out = tmp_path / "run"
  assert cli.main([
      "run", "--images",
      os.path.join(root, stem + ".tif"), "--masks",
      os.path.join(root, "{stem}_mask.png"), "--output",
      str(out), "--model", model, "--no-report", *extra
  ]) == 0
  return (out / "restored" / (stem + ".tif")).read_bytes()


def test_healthz(server):
  url, _ = server
  h = requests.get(url + "/healthz", timeout=10).json()
  assert h["status"] == "ok" and h["model"]["name"] == "mean-fill" and h["root"] is True


@pytest.mark.slow
def test_restore_is_byte_identical_to_cloudfill_run(server, root, mean_model, tmp_path):
  url, _ = server
  stem = STEMS[0]
  expected = _pipeline_bytes(tmp_path, root, stem, mean_model)
  by_path = requests.post(url + "/v1/restore",
                          data={
                              "path": stem + ".tif",
                              "mask_path": stem + "_mask.png"
                          },
                          timeout=60)
  assert by_path.status_code == 200, by_path.text
  assert by_path.content == expected
  # An upload carries the same provenance when the client names its source and time.
  src = os.path.join(root, stem + ".tif")
  uploaded = requests.post(url + "/v1/restore",
                           files=_files(root, stem),
                           data={
                               "source": src,
                               "mtime": repr(os.path.getmtime(src))
                           },
                           timeout=60)
  assert uploaded.content == expected
  assert uploaded.headers["content-type"] == "image/tiff"
  assert 'filename="%s.tif"' % stem in uploaded.headers["content-disposition"]


def test_restored_upload_keeps_format_and_known_pixels(server, root, tmp_path):
  url, _ = server
  stem = STEMS[1]
  r = requests.post(url + "/v1/restore", files=_files(root, stem), timeout=60)
  assert r.status_code == 200, r.text
  (tmp_path / "out.tif").write_bytes(r.content)
  out, op = read_raster(str(tmp_path / "out.tif"))
  src, sp = read_raster(os.path.join(root, stem + ".tif"))
  mask = np.asarray(Image.open(os.path.join(root, stem + "_mask.png"))) > 0
  assert out.dtype == src.dtype and out.shape == src.shape
  np.testing.assert_array_equal(out[~mask], src[~mask])
  assert not np.array_equal(out[mask], src[mask])
  assert op["crs"] == sp["crs"] and op["transform"] == sp["transform"] and op["nodata"] == sp["nodata"]
  assert op["tags"]["CLOUDFILL_SOURCE"] == "upload:" + stem + ".tif"
  assert int(r.headers["x-cloudfill-missing"]) == int(mask.sum())
  odd = requests.post(url + "/v1/restore",
                      files=_files(root, stem),
                      data={"source": 'a"b\r\nX-Evil: 1é.tif'},
                      timeout=60)
  assert odd.status_code == 200 and "x-evil" not in odd.headers
  assert 'filename="a_b__X-Evil__1_' in odd.headers["content-disposition"]


def test_png_in_png_out(server, tmp_path):
  url, _ = server
  rng = np.random.default_rng(1)
  img = rng.integers(0, 255, (100, 120, 3)).astype(np.uint8)
  mask = cloud_mask(100, 120, seed=2)
  r = requests.post(url + "/v1/restore",
                    files={
                        "image": ("a.png", _png(img)),
                        "mask": ("m.png", _png(mask.astype(np.uint8) * 255))
                    },
                    timeout=60)
  assert r.status_code == 200 and r.headers["content-type"] == "image/png"
  out = np.asarray(Image.open(io.BytesIO(r.content)))
  np.testing.assert_array_equal(out[~mask], img[~mask])


def test_preview_and_display(server, root):
  url, svc = server
  stem = STEMS[0]
  p = requests.post(url + "/v1/preview", files=_files(root, stem), timeout=60)
  assert p.status_code == 200 and p.headers["content-type"] == "image/png"
  im = Image.open(io.BytesIO(p.content))
  assert max(im.size) <= svc.card.window and int(p.headers["x-cloudfill-factor"]) == 4  # 256 / 64.
  d = requests.post(url + "/v1/display",
                    data={
                        "path": stem + ".tif",
                        "bands": "3,2,1",
                        "percentiles": "1,99"
                    },
                    timeout=60)
  info = __import__("json").loads(d.headers["x-cloudfill-info"])
  assert Image.open(io.BytesIO(d.content)).size == (256, 256)
  assert info["dtype"] == "uint16" and info["shown"] == [3, 2, 1] and len(info["limits"]) == 3
  m = requests.post(url + "/v1/mask", data={"mask_path": stem + "_mask.png", "size": "256,256"}, timeout=60)
  drawn = np.asarray(Image.open(io.BytesIO(m.content))) > 127
  assert (drawn == (np.asarray(Image.open(os.path.join(root, stem + "_mask.png"))) > 0)).all()


def test_downsample_is_a_block_mean_and_any_missing_pixel_marks_its_block():
  from pipeline.serve_io import downsample
  rng = np.random.default_rng(4)
  image = rng.integers(0, 65535, (1030, 700, 3)).astype(np.uint16)
  mask = np.zeros((1030, 700), bool)
  mask[5, 5] = True
  small, small_mask, f = downsample(image, mask, 256)
  assert f == 5 and small.shape == (206, 140, 3) and small.dtype == np.uint16
  expected = np.rint(image[:1030, :700].astype(np.float64).reshape(206, 5, 140, 5, 3).mean(axis=(1, 3)))
  np.testing.assert_array_equal(small, expected.astype(np.uint16))
  assert small_mask.sum() == 1 and small_mask[1, 1]


def test_every_bad_input_is_a_4xx_with_its_reason(server, root, tmp_path):
  url, _ = server
  stem = STEMS[0]
  post = lambda files=None, data=None, route="/v1/restore": requests.post(
      url + route, files=files, data=data, timeout=60)
  mask = open(os.path.join(root, stem + "_mask.png"), "rb").read()
  image = open(os.path.join(root, stem + ".tif"), "rb").read()
  # Not an image: text, an empty file, a PNG signature followed by garbage.
  assert "not a PNG, JPEG or TIFF" in _refused(post({
      "image": ("a.tif", b"hello"),
      "mask": ("m.png", mask)
  }), 400, "not_an_image")
  _refused(post({"image": ("a.tif", b""), "mask": ("m.png", mask)}), 400, "not_an_image")
  _refused(post({
      "image": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 300),
      "mask": ("m.png", mask)
  }), 400, "not_an_image")
  _refused(post({"image": ("a.tif", image), "mask": ("m.png", b"GIF89a....")}), 400, "not_an_image")
  # Size mismatch, band count, all cloud, no cloud.
  assert "but the image is 256x256" in _refused(
      post({
          "image": ("a.tif", image),
          "mask": ("m.png", _png(np.full((60, 64), 255, np.uint8)))
      }), 422, "size_mismatch")
  two = np.random.default_rng(0).integers(0, 9000, (64, 64, 2)).astype(np.uint16)
  m64 = np.zeros((64, 64), np.uint8)
  m64[5:20, 5:20] = 255
  assert "model takes 3" in _refused(post({
      "image": ("b.tif", _tif(tmp_path, two)),
      "mask": ("m.png", _png(m64))
  }), 422, "invalid")
  assert "every pixel" in _refused(
      post({
          "image": ("a.tif", image),
          "mask": ("m.png", _png(np.full((256, 256), 255, np.uint8)))
      }), 422, "all_cloud")
  assert "no missing pixel" in _refused(
      post({
          "image": ("a.tif", image),
          "mask": ("m.png", _png(np.zeros((256, 256), np.uint8)))
      }), 422, "no_cloud")
  # No image at all; not multipart; a guide for a model that takes none.
  _refused(post({"mask": ("m.png", mask)}), 400, "no_image")
  _refused(requests.post(url + "/v1/restore", data=b"{}", headers={"Content-Type": "application/json"}, timeout=60),
           400, "no_image")
  _refused(post({"image": ("a.tif", image), "mask": ("m.png", mask), "guide": ("g.tif", image)}), 422, "no_guide_input")
  # The preview refuses the same inputs the same way.
  _refused(post({"image": ("a.tif", b"hello"), "mask": ("m.png", mask)}, route="/v1/preview"), 400, "not_an_image")


def test_too_large_refused_from_the_header(server, tmp_path):
  url, svc = server
  import rasterio
  # A 30000 x 30000 GeoTIFF bomb: sparse, a few kB on disk, 900 Mpx once decoded.
  bomb = tmp_path / "bomb.tif"
  with rasterio.open(bomb,
                     "w",
                     driver="GTiff",
                     height=30000,
                     width=30000,
                     count=3,
                     dtype="uint16",
                     tiled=True,
                     compress="deflate",
                     SPARSE_OK=True):
    pass
  assert bomb.stat().st_size < 200_000
  m = _png(np.zeros((8, 8), np.uint8))
  reason = _refused(
      requests.post(url + "/v1/restore",
                    files={
                        "image": ("b.tif", bomb.read_bytes()),
                        "mask": ("m.png", m)
                    },
                    timeout=60), 413, "too_large")
  assert "30000x30000" in reason and str(MAX_PIXELS) in reason
  # Over --max-pixels but tiny: a 500 x 500 PNG.
  _refused(
      requests.post(url + "/v1/restore",
                    files={
                        "image": ("a.png", _png(np.zeros((500, 500), np.uint8))),
                        "mask": ("m.png", m)
                    },
                    timeout=60), 413, "too_large")
  # A body over --max-upload-mb, declared, and sent in chunks without a length.
  _refused(requests.post(url + "/v1/restore", files={"image": ("a.tif", b"II*\x00" + bytes(5 << 20))}, timeout=60), 413,
           "too_large")

  def chunks():
    yield b"--xx\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.tif\"\r\n\r\nII*\x00"
    for _ in range(6):
      yield bytes(1 << 20)

  _refused(
      requests.post(url + "/v1/restore",
                    data=chunks(),
                    timeout=60,
                    headers={"Content-Type": "multipart/form-data; boundary=xx"}), 413, "too_large")


def test_root_confinement(server, root):
  url, _ = server
  for path, status in (("../" + os.path.basename(root) + "/" + STEMS[0] + ".tif", 403), ("/etc/passwd", 403),
                       ("link_out.png", 403), ("nope.tif", 404), ("sub/../" + STEMS[0] + ".tif", 403)):
    r = requests.post(url + "/v1/display", data={"path": path}, timeout=60)
    assert r.status_code == status, (path, r.text)
  r = requests.post(url + "/v1/restore", data={"path": STEMS[0] + ".tif", "mask_path": "link_out.png"}, timeout=60)
  _refused(r, 403, "outside_root")
  listed = requests.get(url + "/v1/files", timeout=10).json()["files"]
  assert "link_out.png" not in listed and STEMS[0] + ".tif" in listed


def test_no_cors_and_temp_folder_left_empty(server, root):
  url, svc = server
  r = requests.get(url + "/healthz", headers={"Origin": "http://evil.example"}, timeout=10)
  assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
  requests.post(url + "/v1/restore", files=_files(root, STEMS[0]), timeout=60)
  requests.post(url + "/v1/restore", files={"image": ("a.tif", b"junk")}, timeout=60)
  assert os.listdir(svc.temp) == []


def test_concurrent_requests_share_model_calls(server, root):
  url, svc = server
  files = _files(root, STEMS[1])
  solo = requests.post(url + "/v1/restore", files=files, timeout=60).content
  before = dataclass_copy(svc.predict.stats)
  with concurrent.futures.ThreadPoolExecutor(12) as pool:
    results = list(pool.map(lambda _: requests.post(url + "/v1/restore", files=files, timeout=120), range(12)))
  assert all(r.status_code == 200 for r in results)
  assert all(r.content == solo for r in results)  # The mean-fill model is exact per window.
  windows = svc.predict.stats.windows - before.windows
  calls = svc.predict.stats.calls - before.calls
  assert windows == 12 * int(results[0].headers["x-cloudfill-windows"])
  assert calls < windows and svc.predict.stats.shared_calls > before.shared_calls


@pytest.mark.parametrize("share", [True, False])
def test_batcher_returns_each_caller_its_rows(share):
  from pipeline.serve_batcher import MicroBatcher
  calls = []

  def model(images, masks):
    calls.append(sorted(set(images[:, 0, 0, 0].astype(int).tolist())))  # Callers' k (see below).
    return images * 2 + masks

  b = MicroBatcher(model, max_batch=8, max_wait_s=0.02, share=share)
  try:

    def one(k):
      n = 1 + k % 8
      images = np.full((n, 4, 4, 3), 100 * k, np.float32)
      images[:, 1:] += np.arange(n, dtype=np.float32)[:, None, None, None]
      masks = np.ones((n, 4, 4, 1), np.float32)
      np.testing.assert_array_equal(b.predict(images, masks), images * 2 + 1)
      return n

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
      total = sum(pool.map(one, range(40)))
  finally:
    b.close()
  assert b.stats.windows == total and b.stats.largest_batch <= 8
  if share:
    assert b.stats.shared_calls > 0 and b.stats.calls < 40
  else:  # Each call serves exactly one caller.
    assert b.stats.shared_calls == 0 and all(len(c) == 1 for c in calls) and b.stats.calls == 40


def dataclass_copy(obj):
  import dataclasses
  return dataclasses.replace(obj)


@pytest.mark.slow
def test_default_model_byte_identical_to_cloudfill_run(root, tmp_path):
  """The shipped model and the landsat8_l1 profile (value range, dilation)."""
  stem = STEMS[1]
  expected = _pipeline_bytes(tmp_path, root, stem, os.path.join(ROOT, "model_loader", "default_model"), "--config",
                             "landsat8_l1")
  with running(None, "landsat8_l1", root=root) as (url, _):
    r = requests.post(url + "/v1/restore", data={"path": stem + ".tif", "mask_path": stem + "_mask.png"}, timeout=120)
  assert r.status_code == 200, r.text
  assert r.content == expected


@pytest.mark.slow
def test_cli_usage_errors_exit_2_and_serve_starts(mean_model, tmp_path):
  env = dict(os.environ, TMPDIR=str(tmp_path))
  bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", "--root",
                        str(tmp_path / "nope")],
                       capture_output=True,
                       text=True,
                       env=env,
                       cwd=ROOT,
                       timeout=120)
  assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "is not a folder" in bad.stderr
  bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", "--port", "eighty"],
                       capture_output=True,
                       text=True,
                       env=env,
                       cwd=ROOT,
                       timeout=120)
  assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--port" in bad.stderr
  port = free_port()
  proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--model", mean_model, "--port",
                           str(port)],
                          env=env,
                          cwd=ROOT,
                          stderr=subprocess.PIPE,
                          text=True)
  try:
    import time
    deadline = time.monotonic() + 120
    while True:
      try:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["status"] == "ok"
        break
      except requests.ConnectionError:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.3)
    assert [n for n in os.listdir(tmp_path) if n.startswith("cloudfill-serve-")]
  finally:
    proc.send_signal(__import__("signal").SIGINT)
    proc.wait(timeout=60)
  assert not [n for n in os.listdir(tmp_path) if n.startswith("cloudfill-serve-")]


def test_serve_without_its_extra_is_one_line_exit_2(tmp_path):
  """Without uvicorn (the environment demo.sh builds has no serve extra): one
  line naming the install command, exit 2, before the model loads, and no
  temporary folder left behind."""
  code = (
      "import sys; sys.modules['uvicorn'] = None\n"  # Importing it now raises ImportError.
      "from pipeline import cli; raise SystemExit(cli.main(['serve']))")
  got = subprocess.run([sys.executable, "-c", code],
                       capture_output=True,
                       text=True,
                       env=dict(os.environ, TMPDIR=str(tmp_path)),
                       cwd=ROOT,
                       timeout=120)
  assert got.returncode == 2, got.stderr
  assert got.stderr.strip().count("\n") == 0, got.stderr
  assert "needs the serve extra (uvicorn not installed)" in got.stderr and "install -e '.[serve]'" in got.stderr
  assert os.listdir(tmp_path) == []
