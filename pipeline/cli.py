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

from pipeline.progress import NoiseFilter
from pipeline.usage import EXIT_USAGE, version

USAGE = __doc__.replace("``", "")
# Each verb names its module and function, loaded only when the verb is given:
# `cloudfill --version` and `--help` import neither Beam nor TensorFlow, and
# the serving path never imports training/ (it brings Keras, and `train` must
# choose JAX before Keras loads).
VERBS = {
    "run": ("pipeline.run", "run_command"),
    "report": ("pipeline.report", "main"),
    "serve": ("pipeline.serve", "main"),
    "train": ("training.train", "main"),
    "export": ("training.export", "main"),
}

HELP_FLAGS = ("-h", "--help", "--version", "-V")


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    return _main(argv)
  except BrokenPipeError:
    if not any(a in HELP_FLAGS for a in argv):
      raise
    # `cloudfill --help | head`: the reader is gone, which is no error; keep
    # Python from reporting it again when it flushes stdout at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _main(argv: list[str]) -> int:
  # TensorFlow's C++ start-up chatter (CPU features, no CUDA driver) is not
  # news on a CPU machine; set TF_CPP_MIN_LOG_LEVEL=0 to see it.
  chatter = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  if not argv or argv[0] in ("-h", "--help"):
    print(USAGE)
    return 0 if argv else EXIT_USAGE
  if argv[0] in ("--version", "-V"):
    print(f"cloudfill {version()}")
    return 0
  verb, rest = argv[0], argv[1:]
  if verb not in VERBS:
    print(f"cloudfill: unknown command {verb!r}\n{USAGE}", file=sys.stderr)
    return EXIT_USAGE
  module, function = VERBS[verb]
  # `run` filters the start-up noise itself (its -vv turns the filter off).
  with NoiseFilter(enabled=verb != "run" and not chatter):  # What absl prints before TF_CPP_MIN_LOG_LEVEL applies.
    return getattr(importlib.import_module(module), function)(rest) or 0


if __name__ == "__main__":
  raise SystemExit(main())
