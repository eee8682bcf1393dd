"""``cloudfill``: one command, five verbs.

    cloudfill run    --images PATTERN --masks TEMPLATE --output DIR [...]
    cloudfill train  ...   (training.train)
    cloudfill export ...   (training.export)
    cloudfill report RUN_DIR
    cloudfill serve  [--model URI] [--config NAME] [--root DIR] ...   (pipeline.serve)
    cloudfill --version

Exit statuses of ``cloudfill run``: 0 every input restored or skipped; 3 the
run finished but some inputs were dead-lettered as failed (see ``failed/``);
1 the pipeline itself failed; 2 bad usage or a model that cannot serve.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Optional, Sequence

from pipeline import report, serve
from pipeline import run as run_lib
from pipeline import summary as summary_lib
from pipeline.progress import NoiseFilter
from pipeline.usage import version

USAGE = __doc__
# The model's own commands live in training/, which the serving path never
# imports (it brings Keras, and `train` must choose JAX before Keras loads):
# these verbs name their module and it is loaded only when the verb is given.
TRAINING_VERBS = {"train": "training.train", "export": "training.export"}


def main(argv: Optional[Sequence[str]] = None) -> int:
  # TensorFlow's C++ start-up chatter (CPU features, no CUDA driver) is not
  # news on a CPU machine; set TF_CPP_MIN_LOG_LEVEL=0 to see it.
  chatter = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  argv = list(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  if not argv or argv[0] in ("-h", "--help"):
    print(USAGE)
    return 0 if argv else summary_lib.EXIT_USAGE
  if argv[0] in ("--version", "-V"):
    print(f"cloudfill {version()}")
    return 0
  verb, rest = argv[0], argv[1:]
  if verb == "run":
    return run_lib.run_command(rest)
  if verb in TRAINING_VERBS:
    with NoiseFilter(enabled=not chatter):  # What absl prints before TF_CPP_MIN_LOG_LEVEL applies.
      return importlib.import_module(TRAINING_VERBS[verb]).main(rest) or 0
  if verb == "serve":
    with NoiseFilter(enabled=not chatter):
      return serve.main(rest)
  if verb == "report":
    return report.main(rest) or 0
  print(f"cloudfill: unknown command {verb!r}\n{USAGE}", file=sys.stderr)
  return summary_lib.EXIT_USAGE


if __name__ == "__main__":
  raise SystemExit(main())
