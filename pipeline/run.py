"""``cloudfill run``: parse once, check, build the graph, run it, report.

    cloudfill run --images PATTERN --masks TEMPLATE --output DIR [...]
    python -m pipeline.run ...          # the same, Beam's convention

:func:`run` (argv in, ``PipelineResult`` out, not waited on) is what the
Flex Template launcher and the tests call; :func:`run_command` is the whole
command: launch checks (:mod:`pipeline.preflight`), ``--dry-run``, the
pipeline (:func:`launch`, graph in :mod:`pipeline.graph`), the progress line,
the counts, the report and the exit status. The options are parsed once
(:func:`pipeline.options.parse`) and turned once into a
:class:`pipeline.config.RunConfig`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions, SetupOptions, StandardOptions,
                                                  TestOptions)
from apache_beam.runners.runner import PipelineResult, PipelineState

from model_loader import lite, locate, native
from model_loader.contract import ModelCard
from pipeline import config as run_config
from pipeline import dryrun, preflight, report, runlock
from pipeline import options as cli_options
from pipeline import summary as summary_lib
from pipeline.graph import build
from pipeline.progress import NoiseFilter, Progress
from pipeline.usage import UsageError, version
from transforms import geotiff_out
from transforms.atomic_write import write_bytes_atomic


def new_run_id() -> str:
  """A sortable id naming this run's metrics and dead-letter files."""
  return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def check_model_early(model_uri: str, card: ModelCard, backend: str = "native") -> tuple[str, ...]:
  """Loads the model the run will use once at launch and runs one window
  through it; returns the inputs its ``restore`` signature declares. With
  ``--backend tflite`` that is the model's TFLite file alone (on LiteRT, so
  the launcher does not import TensorFlow either).

  Raises:
    ValueError or OSError: the model cannot serve; no tile has been written.
  """
  local = locate.stage_locally(model_uri)
  if backend == "tflite":
    path = lite.tflite_path(local)
    small = lite.LiteModel(path, threads=1)
    if small.window != card.window:
      raise ValueError(f"the TFLite model at {path} takes {small.window}² windows, the card says {card.window}")
    native.check_model(small, card.window, card.bands)
    return small.input_names
  try:
    model = native.load(local)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"the model at {model_uri} failed to load: {e}") from e
  native.check_model(model, card.window, card.bands)
  return model.input_names


def check_output(output: str) -> None:
  """Refuses an ``--output`` that Beam's file sinks cannot write under.

  Raises:
    ValueError: the path holds a glob character (``[``, ``?``, ``*``):
      Beam's text sink matches its own temporary files by pattern and fails.
  """
  bad = sorted({c for c in output if c in "[?*"})
  if bad:
    raise ValueError(f"--output {output!r} holds the glob character(s) {' '.join(bad)}, under which "
                     "Beam's file sinks cannot finish; choose a folder name without them")


def graph_only(options: PipelineOptions) -> bool:
  """Dataflow ``--dry_run`` or ``--template_location``: the job is only built.

  A Flex Template launcher and an offline check both end there: there is no
  job to wait for, no summary to read, and no lock to take.
  """
  if "Dataflow" not in str(options.view_as(StandardOptions).runner or ""):
    return False
  return bool(options.view_as(TestOptions).dry_run or options.view_as(GoogleCloudOptions).template_location)


def launch(args: argparse.Namespace,
           beam_args: Sequence[str],
           save_main_session: bool = True,
           test_pipeline: Optional[beam.Pipeline] = None) -> PipelineResult:
  """Builds and runs the pipeline for parsed options; returns its result (not waited on).

  Raises:
    FileNotFoundError, ValueError: bad model or options (before any work).
  """
  pipeline_options = PipelineOptions(list(beam_args))
  FileSystems.set_options(pipeline_options)  # s3:// endpoint and credentials, here too.
  model_uri = locate.resolve(args.model)
  card = locate.read_card(model_uri)
  if args.bands and len(args.bands) != card.bands:
    raise ValueError(f"--bands selects {len(args.bands)} bands but the model takes {card.bands}")
  config = run_config.from_options(args, card, model_uri, new_run_id())
  check_output(config.output_dir)
  geotiff_out.check_options(config.write.tiff)
  config = config.with_model_inputs(check_model_early(model_uri, card, args.backend or "native"))
  pipeline_options.view_as(SetupOptions).save_main_session = save_main_session
  p = test_pipeline or beam.Pipeline(options=pipeline_options)
  build(p, config)
  lock = None if graph_only(pipeline_options) else runlock.acquire(config.output_dir, config.run_id, pipeline_options)
  try:
    result = p.run()
  except BaseException:
    if lock:
      lock.release()
    raise
  if lock and PipelineState.is_terminal(result.state):  # Finished here (a local runner).
    lock.release()
  return result


def run(argv: Optional[Sequence[str]] = None,
        save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> PipelineResult:
  """Parses ``argv`` and :func:`launch` es the pipeline; returns its ``PipelineResult``.

  Raises:
    FileNotFoundError, ValueError: bad model or options (before any work).
  """
  args, beam_args = cli_options.parse(argv)
  return launch(args, beam_args, save_main_session, test_pipeline)


# --- the command ------------------------------------------------------------------


def usage_error(message: object) -> int:
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


def check_at_launch(args: argparse.Namespace, beam_args: Sequence[str]) -> tuple[ModelCard, list[str]]:
  """Launch checks (see :mod:`pipeline.preflight`); returns (card, matched paths).

  A profile's ``expect.value_ranges`` may set ``args.value_range`` here
  (:func:`pipeline.preflight.check_sample`).
  """
  FileSystems.set_options(PipelineOptions(list(beam_args)))
  preflight.check_output(args.output)
  preflight.check_credentials([args.images, args.masks, args.output, args.model, args.reference], beam_args)
  card = preflight.read_card(locate.resolve(args.model))
  if args.bands and len(args.bands) != card.bands:
    raise UsageError(f"--bands selects {len(args.bands)} bands but the model takes {card.bands}")
  paths = preflight.match_inputs(args.images)
  preflight.check_sample(paths, args, card)
  return card, paths


def run_command(argv: Optional[Sequence[str]]) -> int:
  """``cloudfill run``: checks, runs the pipeline, waits, reports; returns the exit status."""
  argv = list(argv or [])
  if "--version" in argv:
    print(f"cloudfill {version()}")
    return summary_lib.EXIT_OK
  try:
    args, beam_args = cli_options.parse(argv)
  except UsageError as e:
    return usage_error(e)
  configure_logging(args.quiet, args.verbose)
  with NoiseFilter(enabled=args.verbose < 2):
    return _run_checked(args, beam_args)


def _run_checked(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
  start = time.time()
  only_graph = graph_only(PipelineOptions(list(beam_args)))
  paths: list[str] = []
  try:
    if not only_graph:
      card, paths = check_at_launch(args, beam_args)
      if args.dry_run:
        print(dryrun.render(dryrun.plan(paths, args, card)))
        return summary_lib.EXIT_OK
    result = launch(args, beam_args)
  except (UsageError, FileNotFoundError, ValueError) as e:
    return usage_error(e)
  if only_graph:  # Dataflow --dry_run or --template_location: nothing runs here.
    print("cloudfill run: job graph built and translated (dry run or template); no tile was processed")
    return summary_lib.EXIT_OK
  local_out = FileSystems.get_scheme(args.output) is None
  try:
    with Progress(os.path.join(args.output, "restored") if local_out else None, len(paths), enabled=not args.quiet):
      state = result.wait_until_finish()
  except Exception as e:  # pylint: disable=broad-except
    logging.exception("pipeline failed")
    print(f"cloudfill run: the pipeline failed: {e}", file=sys.stderr)
    return summary_lib.EXIT_PIPELINE_FAILED
  if state not in (PipelineState.DONE, None) and "DataflowRunner" not in " ".join(beam_args):
    print(f"cloudfill run: the pipeline ended in state {state}", file=sys.stderr)
    return summary_lib.EXIT_PIPELINE_FAILED
  summary_path = FileSystems.join(args.output, summary_lib.SUMMARY)
  summary = summary_lib.read_json(summary_path)
  if summary is None:
    print(f"cloudfill run: the pipeline finished but wrote no {summary_path}", file=sys.stderr)
    return summary_lib.EXIT_PIPELINE_FAILED
  _finish_summary(summary, summary_path, time.time() - start)
  _print_where(args, summary_path)
  if not args.no_report:
    try:
      written = report.write_report(args.output)
      if not args.quiet:
        print(f"report:         {written}")
    except Exception as e:  # pylint: disable=broad-except
      print(f"cloudfill run: the report could not be written: {e}", file=sys.stderr)
  reasons = top_reasons(summary)
  if reasons:
    print("top reasons inputs were not restored (summary.json → reasons, failed/*.jsonl):")
    print("\n".join(reasons))
  return summary_lib.exit_status(summary)


def _finish_summary(summary: dict, summary_path: str, wall: float) -> None:
  """Adds the command's wall time and rate to ``summary.json``; prints the counts."""
  summary["wall_seconds"] = round(wall, 3)
  done = summary["counts"]["restored"]
  summary["restored_per_second"] = round(done / wall, 3) if wall > 0 else None
  write_bytes_atomic(summary_path, json.dumps(summary, indent=1).encode())
  print(f"matched {summary['matched']}: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()) +
        f" in {wall:.1f} s")


def _print_where(args: argparse.Namespace, summary_path: str) -> None:
  if args.quiet:
    return
  print(f"restored tiles: {FileSystems.join(args.output, 'restored')}")
  print(f"provenance:     {FileSystems.join(args.output, 'provenance')}")
  print(f"metrics:        {FileSystems.join(args.output, summary_lib.METRICS_DIR)}")
  print(f"dead letters:   {FileSystems.join(args.output, summary_lib.FAILED_DIR)}")
  print(f"summary:        {summary_path}")


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``python -m pipeline.run ...``: the same as ``cloudfill run ...``."""
  logging.getLogger().setLevel(logging.INFO)
  return run_command(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  raise SystemExit(main())
