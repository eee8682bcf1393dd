"""The restoration pipeline, top to bottom.

    match pairs -> skip up-to-date -> decode -> window -> infer -> composite
    -> write + measure -> metrics/*.jsonl, failed/*.jsonl, summary.json

``python -m pipeline.run --images … --masks … --output …`` runs it, as does
``cloudfill run``; :func:`run` returns the ``PipelineResult``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.runners.runner import PipelineState

from model_loader import locate
from model_loader.contract import ModelCard
from pipeline import options as cli_options
from pipeline import runlock
from pipeline import summary as summary_lib
from transforms.composite import CompositeTiles
from transforms.decode import Decode, DecodeSpec
from transforms.footprint import FootprintSpec
from transforms.geotiff_out import TiffSpec
from transforms.guide import GuideSpec
from transforms.guide import check_template as check_guide_template
from transforms.incremental import Incremental
from transforms.infer import Infer, InferSpec
from transforms.masks import MaskSpec
from transforms.match import MatchPairs, check_template
from transforms.neighbours import NeighbourSpec
from transforms.neighbours import header as tile_header
from transforms.prepare import PrepareSpec, PrepareTiles
from transforms.scenes import AssembleScenes, SceneRef, SceneWriteSpec, SpillRef
from transforms.window import FAILED_WINDOWS, CutWindows, WindowSpec
from transforms.write import WriteSpec, WriteTiles

METRICS_DIR = "metrics"
FAILED_DIR = "failed"


def model_info(card: ModelCard, uri: str) -> dict[str, Any]:
  return {"name": card.name, "version": card.version, "uri": uri, "bands": card.bands,
          "window": card.window, "overlap": card.overlap}


def new_run_id() -> str:
  """A sortable id naming this run's metrics and dead-letter files."""
  return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def build(p: beam.Pipeline, args, card: ModelCard, model_uri: str, run_id: str,
          model_inputs: tuple[str, ...] = ("image", "mask")) -> None:
  """Adds the restoration graph for parsed ``args`` to pipeline ``p``.

  Each run writes its own ``metrics/metrics-{run_id}-*.jsonl`` and
  ``failed/dead-letters-{run_id}-*.jsonl``, so the files of earlier (nightly)
  runs stay beside them; ``summary.json`` and ``manifest.json`` describe the
  latest run. ``model_inputs``: what the model's ``restore`` takes (see
  :class:`transforms.infer.InferSpec`).
  """
  out = args.output
  mask = MaskSpec(source=args.mask_source, threshold=args.mask_threshold,
                  dilate=args.dilate, nodata=args.nodata, bits=tuple(getattr(args, "mask_bits", None) or ()),
                  values=tuple(getattr(args, "mask_values", None) or ()))
  vrange = tuple(args.value_range) if args.value_range else None
  tiff = TiffSpec(cog=bool(getattr(args, "cog", False)), options=tuple(getattr(args, "co", None) or ()))

  reference = args.reference
  if reference:
    if args.date:  # As --images and --masks (pipeline.options).
      reference = reference.replace("{date}", args.date)
    check_template(reference, "--reference")
  matched = p | "Match" >> MatchPairs(pattern=args.images, mask_template=args.masks, since=args.since,
                                      output_dir=out)
  todo = matched["pairs"] | "Incremental" >> Incremental(
      output_dir=out, model_version=card.version, overwrite=args.overwrite,
      weights_sha256=card.weights_sha256)
  decoded = todo.todo | "Decode" >> Decode(DecodeSpec(
      mask=mask, bands=tuple(args.bands or ()), model_bands=card.bands,
      nan_as_missing=args.nan_as_missing, scene_pixels=args.scene_pixels,
      max_pixels=args.max_pixels, value_range=vrange, extra_bands=args.extra_bands))
  guide_spec = None
  if args.guide:
    guide_spec = GuideSpec(templates=tuple(args.guide), mask_template=args.guide_masks,
                           bands=tuple(args.bands or ()), value_range=vrange,
                           resampling=args.guide_resampling)
  neighbour_spec, headers = None, []
  # Twice the window: on a cloud across tile borders the step at the border fell from
  # 813 (tiles alone) to 137 DN with one window of margin and 18 with two (8 whole).
  margin = 2 * card.window if args.neighbour_margin is None else args.neighbour_margin
  if margin > 0:
    neighbour_spec = NeighbourSpec(margin=margin, bands=tuple(args.bands or ()), mask=mask,
                                   nodata=args.nodata)
    headers = beam.pvalue.AsSingleton(
        matched["pairs"] | "Headers" >> beam.Map(tile_header) | "Georeferenced" >> beam.Filter(bool)
        | "AllHeaders" >> beam.combiners.ToList())
  prepared = decoded.tiles | "Prepare" >> beam.ParDo(PrepareTiles(PrepareSpec(
      footprint=FootprintSpec(nodata=args.nodata, border_only=args.nodata_border,
                              nan_is_nodata=not args.nan_as_missing,
                              mask_is_nodata=args.mask_source == "nodata",
                              max_fill_distance=args.max_fill_distance),
      guide=guide_spec, neighbours=neighbour_spec, value_range=vrange)), headers).with_outputs(
          "dead", main="tiles")
  # Tiles and large scenes share one output and one windowing step, so that
  # windows stream straight into RunInference (a Flatten here could be
  # materialised by the DirectRunner, holding every window in memory).
  cut = prepared.tiles | "Window" >> beam.ParDo(CutWindows(
      WindowSpec(size=card.window, overlap=card.overlap, value_range=vrange), out,
      preview=not args.no_preview, guide_spec=guide_spec)).with_outputs(FAILED_WINDOWS, main="windows")
  inferred = cut.windows | "Infer" >> Infer(InferSpec(
      # None = the packaged default, resolved where the model loads (a worker's
      # install path differs from the launcher's). tfx-bsl needs a path now.
      model_uri=args.model if args.backend == "native" else model_uri,
      backend=args.backend, overlap=card.overlap,
      min_batch_size=args.min_batch_size, max_batch_size=args.max_batch_size,
      max_batch_duration_secs=args.max_batch_duration_secs, large_model=args.large_model,
      model_copies=args.model_copies, accelerator=args.accelerator, model_inputs=model_inputs))
  inferred = (inferred, cut[FAILED_WINDOWS]) | "WithCutFailures" >> beam.Flatten()
  tile_windows, scene_spills = inferred | "SplitScenes" >> beam.Partition(
      lambda kv, _: int(isinstance(kv[1], SpillRef) or getattr(kv[1], "scene", False)), 2)
  tiles, scene_refs = prepared.tiles | "SplitTileKinds" >> beam.Partition(
      lambda t, _: int(isinstance(t, SceneRef)), 2)
  # The composite needs no guide: drop it before the join.
  keyed_tiles = tiles | "KeyTiles" >> beam.Map(
      lambda t: (t.key, dataclasses.replace(t, guide=None, context=None)
                 if t.guide is not None or t.context is not None else t))
  composited = ({"tile": keyed_tiles, "windows": tile_windows}
                | "Join" >> beam.CoGroupByKey()
                | "Composite" >> beam.ParDo(CompositeTiles(vrange)).with_outputs("dead", main="tiles"))
  written = composited.tiles | "Write" >> beam.ParDo(WriteTiles(WriteSpec(
      output_dir=out, model_version=card.version, evaluate=args.evaluate,
      reference_template=reference, value_range=vrange, tiff=tiff,
      weights_sha256=card.weights_sha256,
      window=(card.window, card.overlap)))).with_outputs("dead", main="results")
  assembled = ({"scene": scene_refs | "KeyScenes" >> beam.Map(lambda s: (s.key, s)),
                "spills": scene_spills}
               | "JoinScenes" >> beam.CoGroupByKey()
               | "AssembleScenes" >> beam.ParDo(AssembleScenes(SceneWriteSpec(
                   output_dir=out, model_version=card.version, evaluate=args.evaluate,
                   value_range=vrange, tiff=tiff, weights_sha256=card.weights_sha256,
                   window=(card.window, card.overlap))))
               .with_outputs("dead", main="results"))

  results = (written.results, assembled.results) | "AllResults" >> beam.Flatten()
  dead = ((matched["dead"], decoded.dead, prepared.dead, composited.dead, written.dead, assembled.dead)
          | "AllDead" >> beam.Flatten())
  _ = (results | "MetricsJson" >> beam.Map(lambda r: r.to_json())
       | "WriteMetrics" >> beam.io.WriteToText(FileSystems.join(out, METRICS_DIR, f"metrics-{run_id}"),
                                               file_name_suffix=".jsonl", skip_if_empty=True))
  _ = (dead | "DeadJson" >> beam.Map(lambda d: d.to_json())
       | "WriteFailed" >> beam.io.WriteToText(FileSystems.join(out, FAILED_DIR, f"dead-letters-{run_id}"),
                                              file_name_suffix=".jsonl", skip_if_empty=True))
  # skip_if_empty: an empty object cannot be written to S3 by Beam's multipart
  # uploader (CompleteMultipartUpload with no parts is refused), and an empty
  # failed/ folder says the same as an empty file.
  outcomes = ((results | "FromResults" >> beam.Map(summary_lib.from_result),
               dead | "FromDead" >> beam.Map(summary_lib.from_dead),
               todo.up_to_date | "FromUpToDate" >> beam.Map(summary_lib.from_up_to_date))
              | "AllOutcomes" >> beam.Flatten())
  _ = (outcomes
       | "Gather" >> beam.combiners.ToList()
       | "WriteSummary" >> beam.ParDo(summary_lib.WriteSummary(out, model_info(card, model_uri), run_id)))


def check_model_early(model_uri: str, card: ModelCard) -> tuple[str, ...]:
  """Loads the model once at launch and runs one window through it; returns
  the inputs its ``restore`` signature declares.

  Raises:
    ValueError or OSError: the model cannot serve; no tile has been written.
  """
  from model_loader import native  # pylint: disable=import-outside-toplevel
  try:
    model = native.load(locate.stage_locally(model_uri))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"the model at {model_uri} failed to load: {e}") from e
  native.check_model(model, card.window, card.bands)
  return model.input_names


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> beam.runners.runner.PipelineResult:
  """Builds and runs the pipeline; returns its ``PipelineResult`` (not waited on).

  Raises:
    FileNotFoundError, ValueError: bad model or options (before any work).
  """
  args, beam_args = cli_options.parse(argv)
  pipeline_options = PipelineOptions(beam_args)
  FileSystems.set_options(pipeline_options)  # s3:// endpoint and credentials, here too.
  model_uri = locate.resolve(args.model)
  card = locate.read_card(model_uri)
  if args.bands and len(args.bands) != card.bands:
    raise ValueError(f"--bands selects {len(args.bands)} bands but the model takes {card.bands}")
  # Unresolvable guide placeholders are a usage error, before any work.
  args.guide = [check_guide_template(t, args.date) for t in (args.guide or [])] or None
  if args.guide_masks:
    args.guide_masks = check_guide_template(args.guide_masks, args.date)
  check_output(args.output)
  model_inputs = check_model_early(model_uri, card)
  pipeline_options.view_as(SetupOptions).save_main_session = save_main_session
  p = test_pipeline or beam.Pipeline(options=pipeline_options)
  run_id = new_run_id()
  build(p, args, card, model_uri, run_id, model_inputs)
  lock = None if _graph_only(pipeline_options) else runlock.acquire(args.output, run_id, pipeline_options)
  try:
    result = p.run()
  except BaseException:
    if lock:
      lock.release()
    raise
  if lock and PipelineState.is_terminal(result.state):  # Finished here (a local runner).
    lock.release()
  return result


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


def _graph_only(options: PipelineOptions) -> bool:
  """Dataflow ``--dry_run`` or ``--template_location``: the job is only built, so no lock."""
  # pylint: disable=import-outside-toplevel
  from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions, TestOptions
  if "Dataflow" not in str(options.view_as(StandardOptions).runner or ""):
    return False
  return bool(options.view_as(TestOptions).dry_run or options.view_as(GoogleCloudOptions).template_location)


def main(argv: Optional[Sequence[str]] = None) -> int:
  logging.getLogger().setLevel(logging.INFO)
  from pipeline import cli  # pylint: disable=import-outside-toplevel
  return cli.run_command(argv)


if __name__ == "__main__":
  raise SystemExit(main())
