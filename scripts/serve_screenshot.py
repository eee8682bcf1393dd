"""Takes docs/serve.png: the page in headless Chromium after a restoration.

A 1024 x 1024 crop of the real Landsat 8 scene in ../shared/data (the
bundled sample tiles otherwise) is picked under --root, a real cloud mask
shape is loaded as the existing mask, one brush stroke is added, and the
image is restored with the default model.

  .venv/bin/python scripts/serve_screenshot.py [OUT.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
from benchmarks import common  # noqa: E402
from tests.serve_fixture import running  # noqa: E402
from tests.test_serve_browser import _drag, _driver, _wait_state  # noqa: E402


def main(out: str) -> int:
  from selenium.webdriver.support.ui import Select
  folder = tempfile.mkdtemp(prefix="cloudfill-shot-")
  tiles, where = common.make_tiles(1, size=1024, seed=11, coverage=(0.05, 0.15))
  common.write_tiles(tiles, folder)
  name = tiles[0]["name"]
  print(where)
  with running(None, "landsat8_l1", root=folder) as (url, _):
    driver = _driver(folder)
    try:
      driver.set_window_size(1500, 1000)
      driver.get(url + "/")
      time.sleep(1)
      Select(driver.find_element("id", "rootImage")).select_by_value(f"images/{name}.tif")
      _wait_state(driver, {"loaded"})
      driver.execute_script("document.body.dataset.state = 'loading'")
      Select(driver.find_element("id", "rootMask")).select_by_value(f"masks/{name}.png")
      _wait_state(driver, {"loaded"})
      _drag(driver, [(80, 900), (300, 860), (520, 930)], "tool-brush")
      driver.find_element("id", "restore").click()
      _wait_state(driver, {"done"}, timeout=300)
      time.sleep(0.5)
      driver.save_screenshot(out)
      print(driver.find_element("id", "status").text)
    finally:
      driver.quit()
  print("written", out)
  return 0


if __name__ == "__main__":
  raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "serve.png")))
