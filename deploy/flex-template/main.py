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

By default the job is submitted and the launcher exits 0 at once (a Flex
Template launch should not wait for the job). ``--wait=true`` runs
``cloudfill run`` to the end instead: it waits for the job, reads its
``summary.json`` and exits 0, 1, 2 or 3 (what an Airflow task wants).

Everything else (pipeline code, DoFns) lives in the installed ``cloudfill``
package, never in ``__main__``, so workers can unpickle it.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

TRUE = ("true", "1", "yes", "on")
# Underscored names that stay Beam options although cloudfill has a flag of that name.
BEAM_OWN = {"dry_run"}
FALSE = ("false", "0", "no", "off", "")


def _flags() -> tuple[dict[str, str], set[str]]:
  """cloudfill's flags: ``{underscored name: flag}`` and the set of boolean flags."""
  from pipeline import options  # pylint: disable=import-outside-toplevel
  names: dict[str, str] = {}
  booleans: set[str] = set()
  for action in options.build_parser()._actions:  # pylint: disable=protected-access
    for flag in action.option_strings:
      # Beam's --dry_run (build the Dataflow job only) is not cloudfill's local --dry-run.
      if flag.startswith("--") and flag[2:].replace("-", "_") not in BEAM_OWN:
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


def split_wait(argv: Sequence[str]) -> tuple[bool, list[str]]:
  """Takes this shim's own ``--wait[=true|false]`` out of ``argv``.

  Raises:
    ValueError: a value that is not true/false.
  """
  wait, rest = False, []
  for arg in argv:
    if arg == "--wait" or arg.startswith("--wait="):
      value = arg.partition("=")[2].strip().lower() if "=" in arg else "true"
      if value not in TRUE + FALSE:
        raise ValueError(f"--wait takes true or false, got {value!r}")
      wait = value in TRUE
    else:
      rest.append(arg)
  return wait, rest


def submit(argv: Sequence[str]) -> int:
  """Builds the job and submits it without waiting (what a Flex Template launcher should do).

  Returns:
    0 once the job is submitted (or, with ``--dry_run``, built); 2 for bad
    options or a model that cannot serve, as ``cloudfill run``.
  """
  # pylint: disable=import-outside-toplevel
  import logging

  from pipeline import run
  from pipeline.summary import EXIT_OK, EXIT_USAGE
  logging.getLogger().setLevel(logging.INFO)  # Beam logs the job id and console URL.
  try:
    result = run.run(list(argv))
  except (FileNotFoundError, ValueError) as e:
    print(f"cloudfill run: {e}", file=sys.stderr)
    return EXIT_USAGE
  try:
    job_id = result.job_id()  # DataflowPipelineResult; none for a dry run or a template file.
  except (AttributeError, TypeError):
    job_id = None
  print(f"cloudfill run: submitted Dataflow job {job_id}" if job_id else
         "cloudfill run: job graph built; nothing submitted")
  return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Submits the job and exits 0, or with ``--wait=true`` runs ``cloudfill run`` to the end
  (waiting for the job and exiting with its status: 0, 1, 2 or 3)."""
  wait, rest = split_wait(sys.argv[1:] if argv is None else argv)
  args = translate(rest)
  if wait:
    from pipeline import run  # pylint: disable=import-outside-toplevel
    return run.main(args)
  return submit(args)


if __name__ == "__main__":
  raise SystemExit(main())
