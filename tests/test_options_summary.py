"""The command line, config profiles, and the summary's accounting."""

import glob
import json

import apache_beam as beam
import pytest

from pipeline import options, summary
from pipeline.outputs import WriteOutputs
from transforms.records import TileResult


def test_config_profile_sets_defaults_and_flags_win(tmp_path):
  args, beam_args = options.parse([
      "--images", "a/*.tif", "--masks", "m/{stem}.png", "--output", "o", "--config", "landsat8_l1", "--dilate", "5",
      "--runner", "DirectRunner"
  ])
  assert args.value_range == (0.0, 65535.0) and args.dilate == 5 and args.max_batch_size == 16
  assert beam_args == ["--runner", "DirectRunner"]
  cfg = tmp_path / "c.yaml"
  cfg.write_text("run:\n  bogus_key: 1\n")
  with pytest.raises(options.UsageError, match="unknown keys"):
    options.parse(["--images", "a", "--masks", "m", "--output", "o", "--config", str(cfg)])


def test_date_fills_images_and_masks_and_is_required_when_templated():
  args, _ = options.parse([
      "--images", "gs://a/{date}/*.tif", "--masks", "gs://a/{date}/m/{stem}.png", "--output", "o", "--date",
      "2026-11-24"
  ])
  assert args.images == "gs://a/2026-11-24/*.tif" and args.masks == "gs://a/2026-11-24/m/{stem}.png"
  with pytest.raises(options.UsageError):
    options.parse(["--images", "gs://a/{date}/*.tif", "--masks", "m", "--output", "o"])


def test_mask_source_defaults_to_nodata_without_masks():
  args, _ = options.parse(["--images", "a", "--output", "o"])
  assert args.mask_source == "nodata"
  with pytest.raises(options.UsageError):
    options.parse(["--images", "a", "--output", "o", "--mask-source", "file"])


def test_since_accepts_iso_and_epoch():
  a, _ = options.parse(["--images", "a", "--output", "o", "--since", "2026-11-24T00:00:00+00:00"])
  b, _ = options.parse(["--images", "a", "--output", "o", "--since", str(a.since)])
  assert a.since == b.since == 1795478400.0


def test_summary_counts_add_up_and_exit_status():
  recs = [
      summary.from_dead(summary.DeadLetter("a", "decode", "bad")),
      summary.from_dead(summary.DeadLetter("b", "validate", "clear", "skipped")), {
          "path": "c",
          "outcome": "restored",
          "output": "o/c",
          "metrics": {
              "coverage": 0.2,
              "seconds": {
                  "write": 0.1
              }
          }
      },
      summary.from_up_to_date(summary.TilePair("d", "d", None))
  ]
  s, m = summary.summarize(recs, {"version": "1"}, "run1")
  assert s["matched"] == 4 and s["counts"] == {"restored": 1, "skipped": 2, "failed": 1} and s["counts_add_up"]
  assert s["metrics"]["coverage"]["mean"] == 0.2 and s["seconds_per_tile"]["write"]["p50"] == 0.1
  assert [r["path"] for r in m["failed"]] == ["a"] and len(m["skipped"]) == 2
  assert summary.exit_status(s) == 3
  s2, _ = summary.summarize(recs[1:], {}, "run2")
  assert summary.exit_status(s2) == 0


def test_a_matched_input_without_an_outcome_is_counted_lost_and_failed():
  recs = [
      summary.from_dead(summary.DeadLetter("a", "decode", "bad")), {
          "path": "c",
          "outcome": "restored",
          "output": "o/c",
          "metrics": {}
      }
  ]
  s, m = summary.summarize(recs, {}, "run1", summary.lost_letters(recs, ["a", "b", "c"]))
  assert s["matched"] == 3 and s["lost"] == 1 and not s["counts_add_up"]
  assert s["counts"] == {"restored": 1, "skipped": 0, "failed": 2}
  assert [(r["path"], r["stage"]) for r in m["failed"]] == [("a", "decode"), ("b", "pipeline")]
  assert summary.exit_status(s) == 3
  whole, _ = summary.summarize(recs, {}, "run2", summary.lost_letters(recs, ["a", "c"]))
  assert whole["lost"] == 0 and whole["counts_add_up"]
  twice, _ = summary.summarize(recs + [summary.from_dead(summary.DeadLetter("c", "write", "disk full"))], {}, "run3")
  assert not twice["counts_add_up"]  # One input, two outcomes.


def test_the_outputs_stage_dead_letters_an_input_the_pipeline_lost(tmp_path):
  """WriteOutputs in a real pipeline: a matched pair that no stage reported ends in failed/lost-*.jsonl."""
  pairs = [summary.TilePair(f"/in/{s}.tif", s, None) for s in ("a", "b", "c")]
  with beam.Pipeline() as p:
    _ = ({
        "results": p | "R" >> beam.Create([TileResult("/in/a.tif", "a", "restored", "/out/a.tif", {})]),
        "dead": p | "D" >> beam.Create([summary.DeadLetter("/in/c.tif", "decode", "bad")]),
        "up_to_date": p | "U" >> beam.Create([]),
        "matched": p | "M" >> beam.Create(pairs)
    } | WriteOutputs(str(tmp_path), "run1", {}))
  s = json.loads((tmp_path / "summary.json").read_text())
  assert s["lost"] == 1 and s["counts"]["failed"] == 2 and not s["counts_add_up"]
  lost = [json.loads(line) for f in glob.glob(str(tmp_path / "failed" / "lost-run1.jsonl")) for line in open(f)]
  assert [(d["path"], d["stage"], d["outcome"]) for d in lost] == [("/in/b.tif", "pipeline", "failed")]
