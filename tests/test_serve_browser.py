"""The ``cloudfill serve`` page in a real headless Chromium (selenium +
Debian's chromium-driver): draw, undo and redo, restore (preview, then the full
result), download, and check the known pixels bit-identical."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import time

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import SAMPLE
from tests.helpers import read_raster, write_geotiff
from tests.serve_fixture import mosaic, running

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SIDE = 1024


def _driver(download_dir: str):
  if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("Chromium or chromedriver not found: apt-get install -y chromium chromium-driver "
                "(scripts/test.sh does when it may); the page's browser test needs both")
  webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra)")
  from selenium.webdriver.chrome.service import Service
  os.environ.setdefault("SE_OFFLINE", "true")  # Never let Selenium Manager look for drivers online.
  opts = webdriver.ChromeOptions()
  opts.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000", "--disable-gpu",
              "--no-first-run"):
    opts.add_argument(arg)
  opts.add_experimental_option("prefs", {
      "download.default_directory": download_dir,
      "download.prompt_for_download": False
  })
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
  driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": download_dir})
  return driver


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  d = tmp_path_factory.mktemp("browser_root")
  tiles = sorted(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))
  _, profile = read_raster(tiles[0])
  t = profile["transform"]
  write_geotiff(str(d / "mosaic.tif"),
                mosaic(tiles, SIDE // 256),
                nodata=profile["nodata"],
                crs=profile["crs"].to_string(),
                transform=(t.a, t.b, t.c, t.d, t.e, t.f))
  stem = os.path.splitext(os.path.basename(tiles[0]))[0]
  shutil.copy(tiles[0], d / (stem + ".tif"))
  shutil.copy(os.path.join(SAMPLE, "masks", stem + ".png"), d / (stem + "_mask.png"))
  return str(d)


@pytest.fixture(scope="module")
def page(root, tmp_path_factory):
  downloads = str(tmp_path_factory.mktemp("downloads"))
  with running(None, root=root) as (url, svc):
    driver = _driver(downloads)
    try:
      driver.get(url + "/")
      yield driver, url, downloads
    finally:
      driver.quit()


def _wait_state(driver, states, timeout=120):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    state = driver.execute_script("return document.body.dataset.state")
    if state in states:
      return state
    if state == "error":
      raise AssertionError(driver.find_element("id", "status").text)
    time.sleep(0.05)
  raise AssertionError(f"page stayed in state {state!r}, waited for {states}")


def _count(driver) -> int:
  return driver.execute_script("return window.cloudfill.maskCount()")


def _drag(driver, points, button_id=None):
  """Presses at the first image point, moves through the others, releases."""
  from selenium.webdriver.common.action_chains import ActionChains
  if button_id:
    driver.find_element("id", button_id).click()
  view = driver.execute_script("const r = document.getElementById('viewport').getBoundingClientRect();"
                               "return Object.assign(window.cloudfill.view(), {left: r.left, top: r.top});")
  to_client = lambda p: (round(view["left"] + view["panX"] + p[0] * view["zoom"]),
                         round(view["top"] + view["panY"] + p[1] * view["zoom"]))
  actions = ActionChains(driver, duration=10)
  pointer = actions.w3c_actions.pointer_action
  pointer.move_to_location(*to_client(points[0]))
  pointer.pointer_down()
  for p in points[1:]:
    pointer.move_to_location(*to_client(p))
  pointer.pointer_up()
  actions.perform()
  return view["zoom"]


def _keys(driver, *keys):
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.keys import Keys
  chain = ActionChains(driver).key_down(Keys.CONTROL)
  if "shift" in keys:
    chain = chain.key_down(Keys.SHIFT)
  chain = chain.send_keys(keys[-1])
  if "shift" in keys:
    chain = chain.key_up(Keys.SHIFT)
  chain.key_up(Keys.CONTROL).perform()


def _download(driver, downloads, element_id, name, timeout=60):
  driver.find_element("id", element_id).click()
  path = os.path.join(downloads, name)
  deadline = time.monotonic() + timeout
  while not (os.path.exists(path) and not glob.glob(path + "*.crdownload")):
    assert time.monotonic() < deadline, f"{name} was not downloaded: {os.listdir(downloads)}"
    time.sleep(0.1)
  time.sleep(0.2)
  return path


def test_draw_undo_redo_restore_download(page, root):
  driver, url, downloads = page
  image_path = os.path.join(root, "mosaic.tif")
  driver.find_element("id", "imageFile").send_keys(image_path)
  _wait_state(driver, {"loaded"})
  assert driver.execute_script("return window.cloudfill.size()") == [SIDE, SIDE]
  driver.execute_script("document.activeElement.blur()")
  assert _count(driver) == 0

  _drag(driver, [(200, 200), (350, 230), (500, 260)], "tool-brush")
  c1 = _count(driver)
  driver.execute_script("const s = document.getElementById('brushSize'); s.value = 40;"
                        "s.dispatchEvent(new Event('input'));")
  _drag(driver, [(300, 600), (500, 640), (700, 650)])
  c2 = _count(driver)
  zoom = _drag(driver, [(600, 100), (900, 400)], "tool-rect")
  c3 = _count(driver)
  _drag(driver, [(250, 150), (450, 300)], "tool-eraser")
  c4 = _count(driver)
  assert 0 < c1 < c2 < c3 and c4 < c3
  # The rectangle covers 300 x 300 image pixels, give or take one screen pixel on each side.
  assert abs((c3 - c2) - 300 * 300) <= 4 * 301 / zoom, (c3 - c2, zoom)
  assert driver.execute_script("return window.cloudfill.history()") == [4, 0]

  driver.find_element("id", "undo").click()
  assert _count(driver) == c3
  _keys(driver, "z")
  assert _count(driver) == c2
  _keys(driver, "y")
  assert _count(driver) == c3
  _keys(driver, "shift", "z")
  assert _count(driver) == c4
  assert not driver.find_element("id", "redo").is_enabled()
  for expected in (c3, c2, c1, 0):  # The whole history, back to the start and forth again.
    _keys(driver, "z")
    assert _count(driver) == expected
  for expected in (c1, c2, c3, c4):
    driver.find_element("id", "redo").click()
    assert _count(driver) == expected

  driver.find_element("id", "restore").click()
  _wait_state(driver, {"done"}, timeout=300)
  timeline = {e["state"]: e for e in driver.execute_script("return window.cloudfill.timeline()")}
  assert timeline["preview"]["t"] < timeline["done"]["t"]
  assert timeline["preview"]["width"] == 256 and timeline["done"]["width"] == SIDE  # Low-res first.
  print(f"preview after {timeline['preview']['t']:.0f} ms, full result after {timeline['done']['t']:.0f} ms")
  assert timeline["preview"]["t"] < 5000
  assert not driver.find_element("id", "after").get_attribute("hidden")
  assert not driver.find_element("id", "outlineLayer").get_attribute("hidden")
  driver.find_element("id", "beforeAfter").click()
  assert driver.find_element("id", "after").get_attribute("hidden")
  driver.find_element("id", "beforeAfter").click()
  assert not driver.find_element("id", "after").get_attribute("hidden")
  if os.environ.get("CLOUDFILL_SCREENSHOT"):
    driver.save_screenshot(os.environ["CLOUDFILL_SCREENSHOT"])

  restored_path = _download(driver, downloads, "downloadRestored", "mosaic.tif")
  mask_path = _download(driver, downloads, "downloadMask", "mosaic_mask.png")
  mask = np.asarray(Image.open(mask_path))
  mask = (mask != 0).any(axis=2) if mask.ndim == 3 else mask != 0
  assert int(mask.sum()) == c4
  out, op = read_raster(restored_path)
  src, sp = read_raster(image_path)
  assert out.dtype == src.dtype == np.uint16 and out.shape == src.shape
  assert op["crs"] == sp["crs"] and op["transform"] == sp["transform"] and op["nodata"] == sp["nodata"]
  np.testing.assert_array_equal(out[~mask], src[~mask])
  assert (out[mask] != src[mask]).any()
  # The page's result is the API's result for the same image and mask.
  api = requests.post(url + "/v1/restore",
                      files={
                          "image": ("mosaic.tif", open(image_path, "rb").read()),
                          "mask": ("m.png", open(mask_path, "rb").read())
                      },
                      timeout=300)
  assert api.content == open(restored_path, "rb").read()


def test_pick_under_root_load_mask_and_stretch(page, root):
  driver, _, _ = page
  from selenium.webdriver.support.ui import Select
  tif = [n for n in os.listdir(root) if n.startswith("LC08") and n.endswith(".tif")][0]
  Select(driver.find_element("id", "rootImage")).select_by_value(tif)
  _wait_state(driver, {"loaded"})
  assert driver.execute_script("return window.cloudfill.size()") == [256, 256]
  mask_name = tif.replace(".tif", "_mask.png")
  driver.execute_script("document.body.dataset.state = 'loading'")
  Select(driver.find_element("id", "rootMask")).select_by_value(mask_name)
  _wait_state(driver, {"loaded"})
  expected = int((np.asarray(Image.open(os.path.join(root, mask_name))) != 0).sum())
  assert _count(driver) == expected > 0
  driver.execute_script("document.activeElement.blur()")
  _keys(driver, "z")
  assert _count(driver) == 0  # Loading a mask is one undoable step.
  _keys(driver, "y")
  assert _count(driver) == expected
  for band_id, value in (("bandR", "3"), ("bandG", "2"), ("bandB", "1")):
    Select(driver.find_element("id", band_id)).select_by_value(value)
  driver.find_element("id", "pctLo").clear()
  driver.find_element("id", "pctLo").send_keys("5")
  driver.execute_script("document.body.dataset.state = 'loading'")
  driver.find_element("id", "applyStretch").click()
  _wait_state(driver, {"loaded"})
  assert "uint16" in driver.find_element("id", "status").text
