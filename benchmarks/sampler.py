"""The training sampler's own speed: crops a second on one process.

The context of each region is the costly part of a training element
(:mod:`training.data`); this times :meth:`training.data.Sampler.batch` on a
training bundle with the guided fill's spectral classes as the pipeline uses
them and, for comparison, with one regression for all pixels.

  python -m benchmarks.sampler --bundle runs/bundle/data.npz [--classes 8,0] [--reuse 1,4]

(the bundle: ``python -m training.bundle --data ../shared/data --out runs/bundle/data.npz``).
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

from benchmarks import common
from training.sampling import sampler
from transforms import regression


def crops_per_second(bundle: str,
                     classes: int,
                     batches: int,
                     batch: int,
                     crops_per_region: int,
                     reuse: int = 1) -> float:
  """Crops a second drawn by one process with ``classes`` spectral classes in
  the guided fill (``reuse``: batches sharing their regions' contexts)."""
  s = sampler(bundle, 3, 128, 0, "train")
  defaults = dict(zip(("unguided", "radius", "classes"), regression.guided_fill.__defaults__))
  defaults["classes"] = classes
  groups = max(1, batches // reuse)
  with mock.patch.object(regression.guided_fill, "__defaults__", tuple(defaults.values())):
    t = time.perf_counter()
    for i in range(groups):
      s.batch_group(7, i * batch, batch, crops_per_region=crops_per_region, reuse=reuse)
    return groups * reuse * batch / (time.perf_counter() - t)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--bundle", default="runs/bundle/data.npz")
  p.add_argument("--classes", default=f"{regression.GUIDE_CLASSES},0", help="comma-separated class counts to time")
  p.add_argument("--batches", type=int, default=6)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--crops-per-region", type=int, default=4)
  p.add_argument("--reuse", default="1", help="comma-separated --region-reuse values to time")
  a = p.parse_args(argv)
  print(f"machine: {common.machine()}")
  for r in (int(v) for v in a.reuse.split(",")):
    for k in (int(v) for v in a.classes.split(",")):
      rate = crops_per_second(a.bundle, k, a.batches, a.batch, a.crops_per_region, r)
      print(f"guided fill with {k} classes, region reuse {r}: {rate:.1f} crops/s on one process", flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
