"""Usage errors: one line, exit 2, no traceback; and which flags Beam knows.

``cloudfill run`` passes every flag it does not know itself to Beam. Beam
only warns about flags that none of its ``PipelineOptions`` parsers knows and
then drops them, so a typo (``--dialte 2``) used to run with the default and
exit 0. :func:`check_beam_args` parses the rest with all of Beam's option
parsers and refuses anything left over: an unknown flag (with the closest
known flag as a suggestion) or a stray positional argument (an unquoted
shell glob expands to many paths, of which Beam kept only the first).
"""

from __future__ import annotations

import argparse
import difflib
from importlib import metadata
from typing import Iterable, Sequence

# Exit statuses of the cloudfill commands (pipeline.cli's docstring says when).
EXIT_OK = 0
EXIT_PIPELINE_FAILED = 1
EXIT_USAGE = 2
EXIT_SOME_FAILED = 3


def version() -> str:
  """The installed ``cloudfill`` distribution's version, or ``unknown``."""
  try:
    return metadata.version("cloudfill")
  except Exception:  # pylint: disable=broad-except
    return "unknown"


class UsageError(ValueError):
  """Bad usage, config, model card or credentials: exit 2 with this one line."""


class OneLineParser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose errors raise :class:`UsageError` (no usage dump)."""

  def error(self, message):  # noqa: D401 (argparse's name)
    raise UsageError(f"{message} (see {self.prog} --help)")


def suggest(flag: str, known: Iterable[str]) -> str:
  """`` (did you mean --dilate?)`` for the closest known flag, or ``""``."""
  name = flag.split("=", 1)[0]
  close = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
  if not close:  # --max_batch_size for --max-batch-size, and the other way round
    alts = {"--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")}
    close = [k for k in known if k in alts]
  return f" (did you mean {close[0]}?)" if close else ""


def beam_parser() -> argparse.ArgumentParser:
  """One parser with the flags of every Beam ``PipelineOptions`` class."""
  # pylint: disable=import-outside-toplevel
  from apache_beam.options import pipeline_options as po

  class _Parser(po._BeamArgumentParser):  # pylint: disable=protected-access

    def error(self, message):
      raise UsageError(f"Beam option: {message}")

  parser = _Parser(allow_abbrev=False, add_help=False)
  subset = {}
  for cls in po.PipelineOptions.__subclasses__():
    subset.setdefault(str(cls), cls)
  for cls in subset.values():
    cls._add_argparse_args(parser)  # pylint: disable=protected-access
  return parser


def check_beam_args(beam_args: Sequence[str], own_flags: Iterable[str]) -> None:
  """Refuses flags no Beam parser knows and stray positional arguments.

  Args:
    beam_args: What our own parser left over.
    own_flags: Our own option strings (for suggestions).

  Raises:
    UsageError: the first offending argument, with a suggestion.
  """
  if not beam_args:
    return
  parser = beam_parser()
  _, unknown = parser.parse_known_args(list(beam_args))
  for arg in unknown:
    if arg == "--":
      continue
    if arg.startswith("-"):
      known = list(own_flags) + [s for s in parser._option_string_actions if s.startswith("--")]  # pylint: disable=protected-access
      raise UsageError(f"unknown option {arg.split('=', 1)[0]}{suggest(arg, known)}")
    raise UsageError(f"unexpected argument {arg!r}: cloudfill run takes no positional arguments "
                     "(quote a glob so the shell does not expand it: --images '/data/*.tif')")
