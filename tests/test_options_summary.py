"""The command line, config profiles, and the summary's accounting."""

import pytest

from pipeline import options, summary


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
