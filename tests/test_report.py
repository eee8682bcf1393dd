"""``cloudfill report``: the HTML report of a run, checked in headless Chromium.

A small run on sample tiles (two restored, one skipped for a clear mask, one
failed for a missing mask) with the mean-fill fixture model; then the report
is opened in headless Chromium driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: no port, no extra package), and every ``<img>``
must have loaded and the counts shown must equal ``summary.json``'s.

Chromium: Debian's ``chromium`` (``apt-get install -y chromium``), or the
binary named by ``$CLOUDFILL_CHROMIUM``; the browser tests skip when none is
found.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any, Optional

import numpy as np
import pytest
from PIL import Image

from pipeline import cli, report
from tests.conftest import SAMPLE
from tests.helpers import read_summary

STEMS = ("LC08_224078_20200518_r300_c200", "LC08_224078_20200518_r900_c1100", "LC08_224078_20200518_r800_c300",
         "LC08_224078_20200518_r1300_c500")


def find_chromium() -> Optional[str]:
  explicit = os.environ.get("CLOUDFILL_CHROMIUM")
  if explicit:
    return explicit if os.path.exists(explicit) else None
  for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
    path = shutil.which(name)
    if path:
      return path
  return None


def _above_4(fd: int) -> int:
  """``fd`` moved to a descriptor number of 10 or more (close-on-exec)."""
  high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
  os.close(fd)
  return high


class Chromium:
  """Headless Chromium driven over the DevTools protocol on a pipe.

  Chromium reads commands from its fd 3 and writes replies and events to its
  fd 4, as JSON messages ending in a NUL byte.
  """

  def __init__(self, exe: str, timeout: float = 60.0):
    self._timeout = timeout
    self._profile = tempfile.mkdtemp(prefix="cloudfill-chromium-")
    # Above 4, so that the redirections below cannot clobber them.
    cmd_r, self._cmd_w = (_above_4(fd) for fd in os.pipe())
    self._out_r, out_w = (_above_4(fd) for fd in os.pipe())
    args = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
        "--no-first-run", "--no-default-browser-check", "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
        "about:blank"
    ]
    self._proc = subprocess.Popen(
        # bash, not sh: dash redirects single-digit descriptors only.
        [
            shutil.which("bash") or "/bin/bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{out_w} {cmd_r}<&- {out_w}>&-', "bash",
            *args
        ],
        pass_fds=(cmd_r, out_w),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    os.close(cmd_r)
    os.close(out_w)
    self._buf = b""
    self._next_id = 0
    self._events: list[dict[str, Any]] = []

  def _read_message(self, deadline: float) -> dict[str, Any]:
    while b"\0" not in self._buf:
      left = deadline - time.monotonic()
      if left <= 0:
        raise TimeoutError("Chromium sent nothing in time")
      ready, _, _ = select.select([self._out_r], [], [], left)
      if ready:
        chunk = os.read(self._out_r, 1 << 20)
        if not chunk:
          raise RuntimeError(f"Chromium closed its DevTools pipe (exit {self._proc.poll()})")
        self._buf += chunk
    raw, self._buf = self._buf.split(b"\0", 1)
    return json.loads(raw)

  def send(self, method: str, params: Optional[dict] = None, session: Optional[str] = None) -> dict:
    """Sends one command and returns its ``result`` (events are kept aside)."""
    self._next_id += 1
    msg = {"id": self._next_id, "method": method, "params": params or {}}
    if session:
      msg["sessionId"] = session
    os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
    deadline = time.monotonic() + self._timeout
    while True:
      reply = self._read_message(deadline)
      if reply.get("id") == self._next_id:
        if "error" in reply:
          raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})
      self._events.append(reply)

  def wait_event(self, method: str, session: Optional[str] = None) -> dict:
    deadline = time.monotonic() + self._timeout
    while True:
      for i, ev in enumerate(self._events):
        if ev.get("method") == method and (session is None or ev.get("sessionId") == session):
          return self._events.pop(i)
      self._events.append(self._read_message(deadline))

  def open(self, url: str) -> str:
    """Opens ``url`` in a new page, waits for its load event; returns the session."""
    target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    self.send("Page.enable", session=session)
    self.send("Page.navigate", {"url": url}, session=session)
    self.wait_event("Page.loadEventFired", session)
    return session

  def evaluate(self, session: str, expression: str) -> Any:
    result = self.send("Runtime.evaluate", {
        "expression": expression,
        "awaitPromise": True,
        "returnByValue": True
    },
                       session=session)
    if "exceptionDetails" in result:
      raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
    return result["result"].get("value")

  def close(self) -> None:
    try:
      self.send("Browser.close")
    except Exception:  # pylint: disable=broad-except
      pass
    try:
      self._proc.wait(15)
    except subprocess.TimeoutExpired:
      self._proc.kill()
      self._proc.wait(5)
    for fd in (self._cmd_w, self._out_r):
      try:
        os.close(fd)
      except OSError:
        pass
    shutil.rmtree(self._profile, ignore_errors=True)


PAGE_STATE = """(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.complete ? null :
      new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })));
  return {
    images: imgs.map(i => ({src: i.getAttribute('src'), complete: i.complete,
                            width: i.naturalWidth, height: i.naturalHeight})),
    counts: Object.fromEntries([...document.querySelectorAll('[data-count]')]
        .map(e => [e.id.replace('count-', ''), Number(e.textContent.trim())])),
    title: document.title,
  };
})()"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mean_model):
  """A finished run: 2 restored, 1 skipped (clear mask), 1 failed (no mask)."""
  base = tmp_path_factory.mktemp("report_run")
  images, masks, out = base / "images", base / "masks", base / "out"
  images.mkdir()
  masks.mkdir()
  for stem in STEMS:
    shutil.copy(os.path.join(SAMPLE, "images", stem + ".tif"), images / (stem + ".tif"))
  for stem in STEMS[:2]:
    shutil.copy(os.path.join(SAMPLE, "masks", stem + ".png"), masks / (stem + ".png"))
  Image.fromarray(np.zeros((256, 256), np.uint8)).save(masks / (STEMS[2] + ".png"))
  status = cli.main([
      "run", "--images",
      str(images / "*.tif"), "--masks",
      str(masks / "{stem}.png"), "--output",
      str(out), "--model", mean_model, "--config", "landsat8_l1", "--evaluate"
  ])
  assert status == 3  # One input failed (its mask is missing).
  return str(out)


def test_run_writes_report_and_counts_match_summary(run_dir):
  """``cloudfill run`` writes the report itself; its counts are summary.json's."""
  summary = read_summary(run_dir)
  assert summary["counts"] == {"restored": 2, "skipped": 1, "failed": 1}
  with open(os.path.join(run_dir, "report.html"), encoding="utf-8") as f:
    page = f.read()
  shown = dict(re.findall(r'id="count-(\w+)" data-count="(\d+)"', page))
  assert {k: int(v) for k, v in shown.items()} == dict(summary["counts"], matched=summary["matched"])
  assert "mask not found" in page and "mask has no missing pixel" in page
  for src in re.findall(r'<img src="([^"]+)"', page):
    assert not src.startswith(("/", "http", "file:")), src  # Relative to report.html.
    assert os.path.getsize(os.path.join(run_dir, src)) > 0


def test_report_command_rewrites_it(run_dir):
  os.remove(os.path.join(run_dir, "report.html"))
  shutil.rmtree(os.path.join(run_dir, "report"))
  assert report.main([run_dir, "--thumbnails", "1"]) == 0
  pngs = sorted(os.listdir(os.path.join(run_dir, "report")))
  assert pngs == [
      "coverage.png", "quality.png", "tile00_after.png", "tile00_before.png", "tile00_provenance.png", "timings.png"
  ]
  assert report.main([run_dir]) == 0  # Back to the default: both restored tiles.


def test_report_loads_in_headless_chromium(run_dir):
  exe = find_chromium()
  if exe is None:
    pytest.skip("no Chromium found: install Debian's chromium (apt-get install -y chromium) or "
                "set CLOUDFILL_CHROMIUM to a Chrome/Chromium binary")
  summary = read_summary(run_dir)
  browser = Chromium(exe)
  try:
    session = browser.open("file://" + os.path.abspath(os.path.join(run_dir, "report.html")))
    state = browser.evaluate(session, PAGE_STATE)
  finally:
    browser.close()
  assert state["title"].startswith("cloudfill report")
  # 3 figures (coverage, timings, quality) and before/after/provenance of both restored tiles.
  assert len(state["images"]) == 3 + 3 * 2, state["images"]
  broken = [i for i in state["images"] if not i["complete"] or i["width"] <= 0]
  assert not broken, f"images that did not load: {broken}"
  assert state["counts"] == dict(summary["counts"], matched=summary["matched"])


def test_report_without_summary_rebuilds_counts(run_dir, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(run_dir, copy)
  os.remove(copy / "summary.json")
  path = report.write_report(str(copy))
  with open(path, encoding="utf-8") as f:
    page = f.read()
  assert "No summary.json" in page
  # The failed/ folder holds the failed and skipped inputs; metrics/ the restored.
  shown = dict(re.findall(r'id="count-(\w+)" data-count="(\d+)"', page))
  assert shown == {"matched": "4", "restored": "2", "skipped": "1", "failed": "1"}


def test_report_on_gcs(run_dir, tmp_path):
  """A gs:// run folder: read and written through Beam's filesystems."""
  pytest.importorskip("gcp_storage_emulator")
  from apache_beam.io.filesystems import FileSystems
  from tests.servers import gcs_emulator, upload_tree
  local = tmp_path / "run"
  shutil.copytree(run_dir, local, ignore=shutil.ignore_patterns("report*"))
  with gcs_emulator("cloudfill-report") as _:
    dest = "gs://cloudfill-report/runs/r1"
    upload_tree(str(local), dest)
    # The outputs recorded in metrics/ are the local restored tiles: previews read them there.
    assert report.main([dest, "--thumbnails", "2"]) == 0
    pngs = sorted(m.path.rsplit("/", 1)[1] for m in FileSystems.match([f"{dest}/report/*.png"])[0].metadata_list)
    assert len(pngs) == 3 + 2 * 3, pngs  # 3 figures; before, after, provenance per tile
    with FileSystems.open(f"{dest}/report.html") as f:
      page = f.read().decode("utf-8")
    assert 'id="count-restored" data-count="2"' in page and "Could not preview" not in page


def test_display_bands():
  assert report.display_bands(["B2 blue", "B3 green", "B4 red"], 3)[0] == [2, 1, 0]
  assert report.display_bands(["red", "green", "blue", "nir"], 4)[0] == [0, 1, 2]
  idx, note = report.display_bands([None] * 13, 13)
  assert idx == [0, 1, 2] and "bands 1,2,3 of 13" in note
  assert report.display_bands([None], 1)[0] == [0, 0, 0]
  # Band numbers alone name no colour (B4 is red on Landsat 8, near-infrared on Landsat 5/7).
  idx, note = report.display_bands(["B4", "B3", "B2"], 3)
  assert idx == [0, 1, 2] and "false colour possible" in note


def test_not_a_run_folder(tmp_path):
  assert report.main([str(tmp_path)]) == 2


def test_report_without_matplotlib(run_dir, tmp_path, monkeypatch):
  """matplotlib is optional: the page keeps its counts and previews."""
  import builtins
  real_import = builtins.__import__

  def no_matplotlib(name, *a, **k):
    if name == "matplotlib" or name.startswith("matplotlib."):
      raise ImportError("No module named 'matplotlib'")
    return real_import(name, *a, **k)

  copy = tmp_path / "run"
  shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report*"))
  monkeypatch.setattr(builtins, "__import__", no_matplotlib)
  path = report.write_report(str(copy))
  monkeypatch.undo()
  with open(path, encoding="utf-8") as f:
    page = f.read()
  assert "no histograms" in page and 'id="count-restored" data-count="2"' in page
  assert sorted(os.listdir(copy / "report")) == [
      "tile00_after.png", "tile00_before.png", "tile00_provenance.png", "tile01_after.png", "tile01_before.png",
      "tile01_provenance.png"
  ]


def _hole(h, w):
  m = np.zeros((h, w), bool)
  m[h // 4:h // 2, w // 3:2 * w // 3] = True
  return m


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_thumbnails_of_png_and_jpeg(tmp_path, ext):
  rng = np.random.default_rng(0)
  img = (rng.uniform(60, 90, (80, 120, 3))).astype(np.uint8)
  mask = _hole(80, 120)
  out = img.copy()
  out[mask] = 200
  src, dst = tmp_path / f"in{ext}", tmp_path / f"out{ext}"
  Image.fromarray(img).save(src, quality=95)
  Image.fromarray(out).save(dst, quality=95)
  t = report.make_thumbnails({"path": str(src), "output": str(dst)})
  # The changed pixels are the hole (JPEG: up to its blurred edge).
  assert abs(t["changed"] - mask.mean()) < (0.002 if ext == ".png" else 0.03)
  assert Image.open(__import__("io").BytesIO(t["before"])).size == (120, 80)


def test_thumbnails_of_a_13_band_float_tiff_and_decimation(tmp_path):
  from tests.helpers import write_geotiff
  rng = np.random.default_rng(1)
  img = rng.uniform(0, 0.3, (700, 500, 13)).astype(np.float32)
  out = img.copy()
  mask = _hole(700, 500)
  out[mask] = 0.5
  write_geotiff(str(tmp_path / "in.tif"), img)
  write_geotiff(str(tmp_path / "out.tif"), out)
  t = report.make_thumbnails({"path": str(tmp_path / "in.tif"), "output": str(tmp_path / "out.tif")})
  assert max(t["shape"]) <= report.THUMB_SIDE and "bands 1,2,3 of 13" in t["note"]
  assert abs(t["changed"] - mask.mean()) < 0.01


def test_report_of_a_folder_restored_again_shows_each_input_once(run_dir, mean_model, tmp_path):
  """Run 2 restores the same tiles again (--overwrite), run 3 skips them: the
  report still shows each input once, by its latest record."""
  copy = tmp_path / "run"
  shutil.copytree(run_dir, copy)
  base = os.path.dirname(run_dir)
  argv = [
      "run", "--images",
      os.path.join(base, "images", "*.tif"), "--masks",
      os.path.join(base, "masks", "{stem}.png"), "--output",
      str(copy), "--model", mean_model, "--config", "landsat8_l1", "--evaluate"
  ]
  assert cli.main(argv + ["--overwrite"]) == 3
  assert cli.main(argv) == 3  # The two restored tiles are up to date now; the mask is still missing.
  assert read_summary(str(copy))["counts"] == {"restored": 0, "skipped": 3, "failed": 1}
  with open(copy / "report.html", encoding="utf-8") as f:
    page = f.read()
  assert "The 2 of 2 restored tiles" in page
  assert len(re.findall(r'<img src="report/tile\d\d_after.png"', page)) == 2
  assert "records of 3 runs" in page and "(6 older records left out)" in page
  # Per run: 2 restored, a clear mask skipped and a missing mask failed (dead letters each time): 10 records, 4 kept.
  assert page.count("mask not found") == 2  # The reasons table and one dead letter, not one a run.


def test_latest_record_per_input():
  from pipeline.report_data import latest_per_input, run_of
  assert run_of("out/metrics/metrics-20261127T175138Z-a6d499-00000-of-00001.jsonl") == "20261127T175138Z-a6d499"
  assert run_of("failed/lost-20261127T175151Z-c0f02f.jsonl") == "20261127T175151Z-c0f02f"
  r1, r2 = "20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb"
  results = [(r1, {"path": "a", "n": 1}), (r2, {"path": "a", "n": 2}), (r2, {"path": "b", "n": 3})]
  dead = [(r1, {"path": "b", "reason": "x"}), (r2, {"path": "c", "reason": "y"}), (r1, {"path": "c", "reason": "z"})]
  kept, kept_dead, superseded = latest_per_input(results, dead)
  assert [r["n"] for r in kept] == [2, 3]  # b failed in run 1 and was restored in run 2.
  assert kept_dead == [{"path": "c", "reason": "y"}]
  assert superseded == 3
