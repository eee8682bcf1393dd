"""Several cloud draws of the whole-scene benchmark side by side (issue 8).

One draw of clouds per scene says little: on the Sentinel-2 scene the lead
over GDAL FillNodata moved from -0.14 to +0.42 dB between three draws, and
the block metric of a small scene moves as much between grids as between
methods. This reads the ``scenes.json`` of several runs of
:mod:`benchmarks.scenes` (each with its own ``--seed``) and tabulates, per
scene and draw, cloudfill's lead over GDAL and its block metric, beside the
spread of the same metric on grids shifted off the windows
(:func:`transforms.metrics.block_controls`) and, where the run has it, the
block metric of the whole-scene push-pull fill (no windows at all).

Run::

  python -m benchmarks.scenes --seed 9 --out benchmarks/results/scenes/seed9   # and so on
  python -m benchmarks.scenes_seeds benchmarks/results/scenes{,/seed9,/seed10}/scenes.json

Prints Markdown (``--out FILE`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence


def table(runs: list[dict]) -> str:
  """The Markdown table of ``runs`` (each a loaded ``scenes.json``)."""
  seeds = [r["seed"] for r in runs]
  names = list(dict.fromkeys(s["scene"] for r in runs for s in r["scenes"]))
  head = ("| scene | " + " | ".join(f"Δ dB, seed {s}" for s in seeds) + " | worst Δ | " +
          " | ".join(f"block (shifted grids; windowless), seed {s}" for s in seeds) + " |")
  lines = [head, "|" + "---|" * (2 + 2 * len(seeds))]
  for name in names:
    deltas, blocks = [], []
    for r in runs:
      row = next((s for s in r["scenes"] if s["scene"] == name), None)
      cf = (row or {}).get("cloudfill", {})
      if row is None or "hole_psnr" not in cf:
        deltas.append(None)
        blocks.append("–")
        continue
      deltas.append(cf["hole_psnr"] - row["gdal"]["hole_psnr"])
      shifted = cf.get("block_shifted_grids") or []
      spread = f" ({min(shifted):.2f}–{max(shifted):.2f})" if shifted else ""
      windowless = (row.get("context") or {}).get("block")
      spread += "" if windowless is None else f"; push-pull {windowless:.2f}"
      blocks.append("–" if cf["block"] is None else f"{cf['block']:.2f}{spread}")
    known = [d for d in deltas if d is not None]
    lines.append(f"| {name} | " + " | ".join("–" if d is None else f"{d:+.2f}" for d in deltas) +
                 f" | {min(known):+.2f} | " + " | ".join(blocks) + " |" if known else f"| {name} | no result |")
  return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.scenes_seeds", description=__doc__.split("\n")[0])
  p.add_argument("runs", nargs="+", help="scenes.json of runs with different --seed")
  p.add_argument("--out", default=None, help="Also write the table here.")
  args = p.parse_args(argv)
  runs = []
  for path in args.runs:
    with open(path, encoding="utf-8") as f:
      runs.append(json.load(f))
  text = table(runs)
  sys.stdout.write(text)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
