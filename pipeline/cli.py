"""``cloudfill``: one command, four verbs.

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

import json
import logging
import os
import sys
import time
from typing import Optional, Sequence

from pipeline import summary as summary_lib

USAGE = __doc__


def _read_json(path: str) -> Optional[dict]:
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  if not FileSystems.exists(path):
    return None
  with FileSystems.open(path) as f:
    return json.loads(f.read().decode("utf-8"))


def _graph_only(beam_args: Sequence[str]) -> bool:
  """True when the runner only builds the job (``--dry_run``, ``--template_location``).

  A Flex Template launcher and an offline check both end there: there is no
  job to wait for and no summary to read.
  """
  # pylint: disable=import-outside-toplevel
  from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions, StandardOptions,
                                                    TestOptions)
  options = PipelineOptions(list(beam_args))
  if "Dataflow" not in str(options.view_as(StandardOptions).runner or ""):
    return False
  return bool(options.view_as(TestOptions).dry_run or options.view_as(GoogleCloudOptions).template_location)


def version() -> str:
  try:
    from importlib.metadata import version as _v  # pylint: disable=import-outside-toplevel
    return _v("cloudfill")
  except Exception:  # pylint: disable=broad-except
    return "unknown"


def _usage_error(message: object) -> int:
  text = " ".join(str(message).split())  # One line, whatever the message held.
  print(f"cloudfill run: {text}", file=sys.stderr)
  return summary_lib.EXIT_USAGE


def configure_logging(quiet: bool, verbose: int) -> None:
  """WARNING by default, ERROR with -q, INFO with -v (Beam's INFO too)."""
  level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
  logging.getLogger().setLevel(level)
  for name in ("apache_beam", "absl", "tensorflow"):
    logging.getLogger(name).setLevel(level if verbose else max(level, logging.WARNING))
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose >= 2 else "3"


def top_reasons(summary: dict, n: int = 3) -> list[str]:
  """The most frequent reasons inputs were not restored, most frequent first."""
  reasons = sorted((summary.get("reasons") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
  return [f"{count:>5} × {reason}" for reason, count in reasons[:n]]


def _preflight(args, beam_args):
  """Launch checks (see :mod:`pipeline.preflight`); returns (card, matched paths)."""
  # pylint: disable=import-outside-toplevel
  from apache_beam.io.filesystems import FileSystems
  from apache_beam.options.pipeline_options import PipelineOptions

  from model_loader import locate
  from pipeline import preflight
  FileSystems.set_options(PipelineOptions(list(beam_args)))
  preflight.check_output(args.output)
  preflight.check_credentials([args.images, args.masks, args.output, args.model, args.reference], beam_args)
  card = preflight.read_card(locate.resolve(args.model))
  if args.bands and len(args.bands) != card.bands:
    raise preflight.UsageError(f"--bands selects {len(args.bands)} bands but the model takes {card.bands}")
  paths = preflight.match_inputs(args.images)
  preflight.check_sample(paths, args, card)
  return card, paths


def run_command(argv: Optional[Sequence[str]]) -> int:
  """``cloudfill run``: checks, runs the pipeline, waits, reports; returns the exit status."""
  from pipeline import options as cli_options  # pylint: disable=import-outside-toplevel
  from pipeline.usage import UsageError  # pylint: disable=import-outside-toplevel
  argv = list(argv or [])
  if "--version" in argv:
    print(f"cloudfill {version()}")
    return summary_lib.EXIT_OK
  try:
    args, beam_args = cli_options.parse(argv)
  except UsageError as e:
    return _usage_error(e)
  configure_logging(args.quiet, args.verbose)
  from pipeline.progress import NoiseFilter  # pylint: disable=import-outside-toplevel
  with NoiseFilter(enabled=args.verbose < 2):
    return _run_checked(argv, args, beam_args)


def _run_checked(argv: Sequence[str], args, beam_args) -> int:
  # pylint: disable=import-outside-toplevel
  from apache_beam.io.filesystems import FileSystems
  from apache_beam.runners.runner import PipelineState

  from pipeline import dryrun
  from pipeline.progress import Progress
  from pipeline.run import run
  from pipeline.usage import UsageError
  from transforms.raster_io import write_bytes_atomic

  start = time.time()
  graph_only = _graph_only(beam_args)
  paths: list[str] = []
  try:
    if not graph_only:
      card, paths = _preflight(args, beam_args)
      if args.dry_run:
        print(dryrun.render(dryrun.plan(paths, args, card)))
        return summary_lib.EXIT_OK
      if args.value_range is not None and "--value-range" not in " ".join(argv):
        argv = list(argv) + ["--value-range", ",".join(repr(float(v)) for v in args.value_range)]
    result = run(argv)
  except (UsageError, FileNotFoundError, ValueError) as e:
    return _usage_error(e)
  if graph_only:  # Dataflow --dry_run or --template_location: nothing runs here.  # Dataflow --dry_run or --template_location: nothing runs here.
    print("cloudfill run: job graph built and translated (dry run or template); no tile was processed")
    return summary_lib.EXIT_OK
  local_out = FileSystems.get_scheme(args.output) is None
  try:
    with Progress(os.path.join(args.output, "restored") if local_out else None, len(paths),
                  enabled=not args.quiet):
      state = result.wait_until_finish()
  except Exception as e:  # pylint: disable=broad-except
    logging.exception("pipeline failed")
    print(f"cloudfill run: the pipeline failed: {e}", file=sys.stderr)
    return summary_lib.EXIT_PIPELINE_FAILED
  if state not in (PipelineState.DONE, None) and "DataflowRunner" not in " ".join(beam_args):
    print(f"cloudfill run: the pipeline ended in state {state}", file=sys.stderr)
    return summary_lib.EXIT_PIPELINE_FAILED
  summary_path = FileSystems.join(args.output, summary_lib.SUMMARY)
  summary = _read_json(summary_path)
  if summary is None:
    print(f"cloudfill run: the pipeline finished but wrote no {summary_path}", file=sys.stderr)
    return summary_lib.EXIT_PIPELINE_FAILED
  wall = time.time() - start
  summary["wall_seconds"] = round(wall, 3)
  done = summary["counts"]["restored"]
  summary["restored_per_second"] = round(done / wall, 3) if wall > 0 else None
  write_bytes_atomic(summary_path, json.dumps(summary, indent=1).encode())
  print(f"matched {summary['matched']}: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
        + f" in {wall:.1f} s")
  if not args.quiet:
    print(f"restored tiles: {FileSystems.join(args.output, 'restored')}")
    print(f"provenance:     {FileSystems.join(args.output, 'provenance')}")
    print(f"metrics:        {FileSystems.join(args.output, 'metrics')}")
    print(f"dead letters:   {FileSystems.join(args.output, 'failed')}")
    print(f"summary:        {summary_path}")
  if not args.no_report:
    try:
      from pipeline import report  # pylint: disable=import-outside-toplevel
      print(f"report:         {report.write_report(args.output)}")
    except ImportError:
      pass
    except Exception as e:  # pylint: disable=broad-except
      print(f"cloudfill run: the report could not be written: {e}", file=sys.stderr)
  reasons = top_reasons(summary)
  if reasons:
    print("top reasons inputs were not restored (summary.json → reasons, failed/*.jsonl):")
    print("\n".join(reasons))
  return summary_lib.exit_status(summary)


def main(argv: Optional[Sequence[str]] = None) -> int:
  # TensorFlow's C++ start-up chatter (CPU features, no CUDA driver) is not
  # news on a CPU machine; set TF_CPP_MIN_LOG_LEVEL=0 to see it.
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
    return run_command(rest)
  if verb == "train":
    from training import train  # pylint: disable=import-outside-toplevel
    return train.main(rest) or 0
  if verb == "export":
    from training import export  # pylint: disable=import-outside-toplevel
    return export.main(rest) or 0
  if verb == "serve":
    from pipeline import serve  # pylint: disable=import-outside-toplevel
    return serve.main(rest)
  if verb == "report":
    from pipeline import report  # pylint: disable=import-outside-toplevel
    return report.main(rest) or 0
  print(f"cloudfill: unknown command {verb!r}\n{USAGE}", file=sys.stderr)
  return summary_lib.EXIT_USAGE


if __name__ == "__main__":
  raise SystemExit(main())
