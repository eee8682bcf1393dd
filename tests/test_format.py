"""One formatter configuration, checked here (so in CI): yapf with the repository's ``.style.yapf``.

Fix a failure with ``yapf -i -r -p pipeline transforms model_loader configs training benchmarks tests``.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "transforms", "model_loader", "configs", "training", "benchmarks", "tests")


def test_the_code_is_formatted_as_style_yapf_says():
  assert os.path.exists(os.path.join(ROOT, ".style.yapf"))
  r = subprocess.run([sys.executable, "-m", "yapf", "--diff", "-r", "-p", *PACKAGES],
                     cwd=ROOT,
                     capture_output=True,
                     text=True,
                     check=False)
  assert r.returncode == 0, ("not formatted as .style.yapf says (run yapf -i -r -p …):\n" + r.stdout[-3000:] +
                             r.stderr[-1000:])
