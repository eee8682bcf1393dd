"""The run's outputs besides the rasters: metrics, dead letters, the summary.

::

  results   -> metrics/metrics-{run}-*.jsonl        (one TileResult a line)
  dead      -> failed/dead-letters-{run}-*.jsonl    (one DeadLetter a line)
  results + dead + up to date -> summary.json, manifest.json
  matched inputs with none of these -> failed/lost-{run}.jsonl, counted as failed

Each run writes its own metrics and dead-letter files, so those of earlier
(nightly) runs stay beside them; ``summary.json`` and ``manifest.json``
describe the latest run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import summary as summary_lib
from pipeline.summary import FAILED_DIR, METRICS_DIR


@dataclasses.dataclass
class WriteOutputs(beam.PTransform):
  """``{"results": TileResult, "dead": DeadLetter, "up_to_date": TilePair,
  "matched": TilePair}`` -> the files above (``matched``, every pair the run
  matched, is optional: without it nothing can be found lost).

  Attributes:
    output_dir: The run's output folder.
    run_id: Names this run's files.
    model: What the summary says about the model
      (:meth:`pipeline.config.ModelInfo.as_dict`).
  """

  output_dir: str
  run_id: str
  model: dict[str, Any]

  def expand(self, outcomes):
    results, dead, up_to_date = outcomes["results"], outcomes["dead"], outcomes["up_to_date"]
    matched = outcomes.get("matched")
    # skip_if_empty: an empty object cannot be written to S3 by Beam's multipart
    # uploader (CompleteMultipartUpload with no parts is refused), and an empty
    # failed/ folder says the same as an empty file.
    _ = (results | "MetricsJson" >> beam.Map(lambda r: r.to_json()) |
         "WriteMetrics" >> beam.io.WriteToText(FileSystems.join(self.output_dir, METRICS_DIR, f"metrics-{self.run_id}"),
                                               file_name_suffix=".jsonl",
                                               skip_if_empty=True))
    _ = (dead | "DeadJson" >> beam.Map(lambda d: d.to_json()) | "WriteFailed" >> beam.io.WriteToText(
        FileSystems.join(self.output_dir, FAILED_DIR, f"dead-letters-{self.run_id}"),
        file_name_suffix=".jsonl",
        skip_if_empty=True))
    return ((results | "FromResults" >> beam.Map(summary_lib.from_result),
             dead | "FromDead" >> beam.Map(summary_lib.from_dead),
             up_to_date | "FromUpToDate" >> beam.Map(summary_lib.from_up_to_date)) | "AllOutcomes" >> beam.Flatten() |
            "Gather" >> beam.combiners.ToList() | "WriteSummary" >> beam.ParDo(
                summary_lib.WriteSummary(self.output_dir, self.model, self.run_id),
                matched=beam.pvalue.AsList(matched | "MatchedPaths" >> beam.Map(lambda pair: pair.image_path))
                if matched is not None else None))
