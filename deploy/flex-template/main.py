"""The file ``FLEX_TEMPLATE_PYTHON_PY_FILE`` names: ``cloudfill run`` for a Flex Template.

The Dataflow launcher calls this file as ``__main__`` with every template
parameter as ``--name=value`` (Airflow's ``BeamRunPythonPipelineOperator``
calls it the same way). Template parameter names cannot hold dashes
and their values are strings, so this shim maps them onto ``cloudfill run``'s
flags before handing over:

* ``--model_copies=1`` -> ``--model-copies=1`` (only for cloudfill's own
  flags; Beam's options such as ``--temp_location`` pass unchanged);
* ``--large_model=true`` (or a bare ``--large_model``, as Airflow's Beam
  operator writes True) -> ``--large-model``; ``false`` (or empty) drops the
  flag;
* empty values (an optional parameter left blank) are dropped;
* ``--runner=DataflowRunner`` is added when the launcher gives no runner.

Everything else (pipeline code, DoFns) lives in the installed ``cloudfill``
package, never in ``__main__``, so workers can unpickle it.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off", "")


def _flags() -> tuple[dict[str, str], set[str]]:
  """cloudfill's flags: ``{underscored name: flag}`` and the set of boolean flags."""
  from pipeline import options  # pylint: disable=import-outside-toplevel
  names: dict[str, str] = {}
  booleans: set[str] = set()
  for action in options.build_parser()._actions:  # pylint: disable=protected-access
    for flag in action.option_strings:
      if flag.startswith("--"):
        names[flag[2:].replace("-", "_")] = flag
        if action.nargs == 0:
          booleans.add(flag)
  return names, booleans


def translate(argv: Sequence[str]) -> list[str]:
  """Flex Template arguments -> ``cloudfill run`` arguments (see the module doc).

  Raises:
    ValueError: a boolean parameter with a value that is not true/false.
  """
  names, booleans = _flags()
  out: list[str] = []
  for arg in argv:
    if not arg.startswith("--"):
      out.append(arg)
      continue
    if "=" not in arg:  # --large_model (Airflow's form of True), or --model_copies 1.
      out.append(names.get(arg[2:].replace("-", "_"), arg))
      continue
    key, value = arg[2:].split("=", 1)
    flag = names.get(key.replace("-", "_"))
    if flag is None:  # A Beam option: unchanged.
      out.append(arg)
    elif flag in booleans:
      if value.strip().lower() in TRUE:
        out.append(flag)
      elif value.strip().lower() not in FALSE:
        raise ValueError(f"{flag} takes true or false, got {value!r}")
    elif value != "":
      out.append(f"{flag}={value}")
  if not any(a == "--runner" or a.startswith("--runner=") for a in out):
    out.append("--runner=DataflowRunner")
  return out


def main(argv: Optional[Sequence[str]] = None) -> int:
  from pipeline import run  # pylint: disable=import-outside-toplevel
  return run.main(translate(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  raise SystemExit(main())
