"""The benchmark instruments themselves: scoring, masks and the classical guided fills.

Real GDAL (rasterio.fill) and real rasters; the model-free parts only, so
these run in seconds. The benchmarks' own figures come from running them.
"""

import json
import os

import numpy as np
import pytest
from scipy import ndimage

from benchmarks import guided, runner, scenes, scenes_seeds
from benchmarks.common import SHARED


def _field(h, w, seed=0):
  rng = np.random.default_rng(seed)
  f = ndimage.gaussian_filter(rng.standard_normal((h, w, 3)), (8, 8, 0))
  return ((f - f.min()) / (f.max() - f.min())).astype(np.float32)


def _case(target, guide, mask, guide_mask=None):
  return {
      "image": target,
      "guide_image": guide,
      "mask": mask,
      "guide_mask": np.zeros_like(mask) if guide_mask is None else guide_mask
  }


def _hole(h=256, w=256):
  m = np.zeros((h, w), bool)
  m[60:190, 80:200] = True
  return m


def test_linear_fit_recovers_gain_and_offset():
  g = _field(256, 256)
  t = g * np.array([2.0, 0.5, 1.0]) + np.array([0.1, 0.2, -0.3])
  a, b = guided.linear_fit(t, g, ~_hole())
  np.testing.assert_allclose(a, [2.0, 0.5, 1.0], atol=1e-5)
  np.testing.assert_allclose(b, [0.1, 0.2, -0.3], atol=1e-5)


def test_guided_fills_beat_the_copy_under_radiometric_change_and_keep_known_pixels():
  g = _field(256, 256)
  t = (0.6 * g + 0.2).astype(np.float32)
  m = _hole()
  c = _case(t, g, m)
  err = {
      name: float(np.abs(fn(c) - t)[m].mean())
      for name, fn in (("copy", guided.guide_copy), ("linear", guided.guide_linear),
                       ("residual", lambda c: guided.guide_linear(c, residual=True)), ("gdal", guided.gdal_unguided))
  }
  assert err["linear"] < 1e-4 and err["residual"] < 1e-3
  assert err["copy"] > 0.03 and err["gdal"] > 100 * err["linear"]
  for fn in (guided.guide_copy, guided.guide_linear, guided.gdal_unguided):
    out = fn(c)
    np.testing.assert_array_equal(out[~m], t[~m])
    assert np.isfinite(out).all()


def test_guide_clouds_fall_back_to_an_unguided_fill():
  g = _field(256, 256)
  t = (0.6 * g + 0.2).astype(np.float32)
  m = _hole()
  gm = np.zeros_like(m)
  gm[100:150, 100:150] = True  # the guide is cloudy inside the target's hole
  out = guided.guide_copy(_case(t, np.where(gm[..., None], 0.0, g), m, gm))
  # No guide pixel under the guide's cloud: never its zeros, a fill from around instead.
  assert out[100:150, 100:150].min() > 0.15


def test_gdal_fill_fills_every_pixel_however_far():
  img = np.zeros((300, 300, 2), np.uint16)
  img[:, :20] = 1000
  known = np.zeros((300, 300), bool)
  known[:, :20] = True
  out = runner.gdal_fill(img, known)
  assert (out == 1000).all()  # 280 px from any known pixel and still filled


def test_score_flags_changed_known_and_nodata_pixels_and_zero_fills():
  truth = (_field(300, 300) * 1000 + 5000).astype(np.uint16)
  valid = np.ones((300, 300), bool)
  valid[:40, 250:] = False
  truth[~valid] = 0
  clouds = _hole(300, 300)
  hole = clouds & valid
  given = truth.copy()
  given[hole] = 65535
  lo, hi = scenes.scene_scale(truth, valid)
  good = truth.copy()
  s = scenes.score(good, truth, given, hole, valid, lo, hi, (0, 65535), (256, 32))
  assert s["known_identical"] and s["nodata_identical"] and s["hole_psnr"] == float("inf")
  assert s["hole_zero_pixels"] == 0 and s["hole_left_as_cloud"] == 0
  bad = truth.copy()
  bad[hole] = 0
  bad[0, 0] += 1
  bad[5, 260] = 7
  s = scenes.score(bad, truth, given, hole, valid, lo, hi, (0, 65535), (256, 32))
  assert not s["known_identical"] and not s["nodata_identical"]
  assert s["hole_zero_pixels"] == int(hole.sum()) and s["hole_flat15_pixels"] > 0


def test_flat_pixels_counts_constant_patches_only():
  img = _field(100, 100)
  hole = np.ones((100, 100), bool)
  assert scenes.flat_pixels(img, hole) == 0
  img[20:60, 20:60] = 0.5
  assert scenes.flat_pixels(img, hole) == (40 - 14)**2


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "cloud_masks")), reason=f"{SHARED} absent")
def test_scene_clouds_hit_the_coverage_and_are_larger_than_a_window():
  spec = scenes.SCENES["landsat5_nanjing"]
  valid = np.ones((800, 800), bool)
  m = scenes.cloud_mask(spec, (800, 800), valid, 0.34, SHARED, np.random.default_rng(12))
  assert abs(m.mean() - 0.34) < 0.01
  sizes = np.bincount(ndimage.label(m)[0].ravel())[1:]
  assert sizes.max() > 256 * 256


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "naip_5m")), reason=f"{SHARED} absent")
def test_a_guide_on_a_shifted_grid_is_resampled_onto_the_targets():
  target = os.path.join(SHARED, "naip_5m", "m_4709963_se_14_1_20120731.tif")  # 723 rows
  guide = os.path.join(SHARED, "naip_5m", "m_4709963_se_14_1_20090818.tif")  # 724 rows, 2 m north
  g = guided.aligned_guide(target, guide, 3)
  assert g.image.shape == (723, 934, 3) and g.valid.mean() > 0.99
  groups, _ = guided.held_out_windows(SHARED, 3)
  assert len(groups["naip_5m"]) >= 12  # every NAIP pair, not only those on one grid


def _save_model(path, guided_inputs):
  import tensorflow as tf
  spec = lambda c: tf.TensorSpec([None, None, None, c], tf.float32)  # noqa: E731
  mod = tf.Module()
  if guided_inputs:

    @tf.function(input_signature=[spec(3), spec(1), spec(3), spec(1), spec(3)])
    def restore(image, mask, guide, guide_mask, context):
      # Guide where the guide is clear, the context elsewhere.
      return {"restored": guide * (1 - guide_mask) + context * guide_mask}
  else:

    @tf.function(input_signature=[spec(3), spec(1)])
    def restore(image, mask):
      return {"restored": image * 0 + 0.5}

  mod.restore = restore
  tf.saved_model.save(mod, path, signatures={"restore": restore})
  return path


def test_the_guided_model_hook_feeds_guide_guide_mask_and_context(tmp_path):
  import argparse
  g = _field(256, 256)
  m = _hole()
  gm = np.zeros_like(m)
  gm[100:120, 100:120] = True
  c = _case(g.copy(), g, m, gm)
  fn = guided.ModelFiller(_save_model(str(tmp_path / "guided"), True), use_guide=True)
  assert fn.guided and "context" in fn.inputs
  out = fn(c)
  np.testing.assert_array_equal(out[~m], g[~m])
  clear = m & ~gm
  # The guide came through where clear, mapped onto the target by the local linear fit (the
  # pipeline's guide input): here the target is the guide itself, so nearly unchanged.
  np.testing.assert_allclose(out[clear], g[clear], atol=0.02)
  assert np.abs(out[gm] - g[gm]).mean() < 0.15 and out[gm].min() > 0.1  # a real fill, not the zeroed guide
  plain = _save_model(str(tmp_path / "plain"), False)
  fns, notes = guided.methods(argparse.Namespace(model=plain, unguided_model=plain))
  assert "cloudfill_guided" not in fns and "cloudfill_unguided" in fns
  assert any("takes no guide" in n for n in notes)


def test_local_regression_predicts_each_band_from_all_guide_bands():
  """A change between dates that mixes bands (red follows the guide's NIR-like band)
  is recovered by the multivariate regression, not by a per-band gain."""
  from transforms import regression as context  # pylint: disable=import-outside-toplevel
  g = _field(256, 256, seed=3)
  mix = np.array([[0.2, 0.0, 0.5], [0.7, 0.3, 0.0], [0.0, 0.6, 0.4]], np.float32)  # [guide band, target band]
  t = (g @ mix + np.array([0.05, 0.1, 0.0], np.float32)).astype(np.float32)
  m = _hole()
  valid = (~m).astype(np.float32)
  a, b = context.local_regression(t, g, ~m)
  assert a.shape == (256, 256, 3, 3) and b.shape == (256, 256, 3)
  mapped = context.apply_regression(g, a, b)
  err_mv = float(np.abs(mapped - t)[m].mean())
  gain, offset = context.local_linear_fit(t, g, ~m, 32)
  err_pb = float(np.abs(g * gain + offset - t)[m].mean())
  assert err_mv < 2e-3, err_mv
  assert err_pb > 5 * err_mv, (err_pb, err_mv)
  filled = context.guided_fill(t * valid[..., None], valid, g, np.ones_like(valid))
  np.testing.assert_array_equal(filled.fill[~m], t[~m])  # known pixels untouched
  assert float(np.abs(filled.fill - t)[m].mean()) < 2e-3 and filled.guided[m].all()
  # A target band count other than the guide's (extra bands from restored bands).
  a1, b1 = context.local_regression(t[..., :1], g, ~m)
  assert a1.shape == (256, 256, 3, 1)
  assert float(np.abs(context.apply_regression(g, a1, b1) - t[..., :1])[m].mean()) < 2e-3


def test_speed_benchmark_package_renders_results_and_attributes_a_profile(tmp_path):
  import glob
  import subprocess
  import sys

  from benchmarks.speed import profiling, render
  from benchmarks.common import ROOT
  files = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "speed", "*.py")))
  assert len(files) >= 10 and all(sum(1 for _ in open(f, encoding="utf-8")) < 400 for f in files)
  result = os.path.join(ROOT, "benchmarks", "results", "speed", "speed_t64_ctx2_before.json")
  md = render.markdown([result])
  assert "| raw loop | tiles/s |" in md and "in_memory x1 | native" in md
  raw = tmp_path / "profile.txt"
  raw.write_text("main (speed/worker.py:1);run (pipeline/run.py:9);process_bundle (x.py:1);"
                 "LoadedModel.__call__ (model_loader/native.py:5) 30\n"
                 "main (speed/worker.py:1);run (pipeline/run.py:9);process_bundle (x.py:1);"
                 "decode_pair (transforms/decode.py:7) 10\n"
                 "main (speed/worker.py:1);_find_and_load (x:1) 99\n")
  share, total = profiling.attribute_profile(str(raw))
  assert total == 40 and share["model: restore signature (TF)"] == 0.75
  # The package runs as the old script did (its worker mode and flags included).
  out = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--help"],
                       cwd=ROOT,
                       capture_output=True,
                       text=True,
                       check=True).stdout
  assert "--probe-tiles" in out and "--markdown" in out and "--probe-every" in out


def test_speed_benchmark_compares_multi_and_in_process_on_both_rates(tmp_path):
  from benchmarks.speed import render
  from benchmarks.speed.__main__ import _goal_lines

  def probe(mode, rate):
    return {"mode": mode, "backend": "native", "tiles": 2, "seconds": 2.0, "marginal_tiles_per_s": rate}

  pipeline = {
      "runs": [{
          "mode": "in_memory",
          "backend": "native",
          "tiles_per_s": 7.0,
          "workers": 1
      }, {
          "mode": "multi_processing",
          "backend": "native",
          "tiles_per_s": 4.0,
          "workers": 2
      }],
      "startups": [probe("in_memory", 9.0), probe("multi_processing", 10.0)]
  }
  lines = _goal_lines({"raw": {"tiles_per_s": 20.0}, "pipeline": pipeline})
  text = "\n".join(lines)
  assert "multi_processing / in_memory, end to end: 4.00 / 7.00 tiles/s (NOT met" in text
  assert "multi_processing / in_memory, marginal: 10.00 / 9.00 tiles/s (MET" in text
  assert pipeline["multi_ge_in_process_marginal"] and not pipeline["multi_ge_in_process_end_to_end"]
  assert "marginal (start-up excluded) multi_processing native: 10.00 tiles/s = 50.0 % of raw" in text
  for run in pipeline["runs"]:
    run.update(seconds=1.0, import_seconds=0.0, process_wall_seconds=1.0)
  machine = dict.fromkeys(("cpu_model", "cpus_usable", "memory_gib", "loadavg_start", "utc_start", "git_commit"), "x")
  path = tmp_path / "result.json"
  path.write_text(
      json.dumps({
          "machine": dict(machine, other_heavy_processes=[]),
          "model": {
              "name": "m",
              "version": "1"
          },
          "pipeline": pipeline
      }))
  md = render.markdown([str(path)])
  assert "Start-up probe (in_memory, native)" in md and "Start-up probe (multi_processing, native)" in md


def test_speed_benchmark_splits_a_runs_cpu_into_the_pooled_steps_and_the_rest():
  from benchmarks.speed import runs

  def dist(count, mean):
    return {"count": count, "mean": mean, "min": 0, "max": 0}

  run = {
      "restored": 10,
      "cpu_seconds": 2.5,
      "beam_metrics": {
          "cloudfill:cpu_us_prepare": dist(10, 30_000.0),  # 30 ms an element, 10 elements
          "cloudfill:cpu_us_cut": dist(20, 5_000.0),  # two elements a tile
          "cloudfill:decode_ms": dist(10, 7.0),  # a wall-clock distribution: not a step's CPU
          "cloudfill:windows": 10,
      }
  }
  cpu = runs.cpu_by_step(run)
  assert set(cpu["steps"]) == {"prepare", "cut"}
  assert cpu["steps"]["prepare"]["core_ms_per_tile"] == pytest.approx(30.0)
  assert cpu["steps"]["cut"]["core_ms_per_tile"] == pytest.approx(10.0)
  assert cpu["process_core_ms_per_tile"] == pytest.approx(250.0)
  assert cpu["rest_core_ms_per_tile"] == pytest.approx(210.0)


def test_multi_process_workers_share_the_cores():
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions

  from model_loader.native import threads_per_worker
  from transforms.pooled import local_worker_threads
  assert threads_per_worker(2, cores=2) == 1 and threads_per_worker(4, cores=16) == 4
  assert threads_per_worker(3, cores=2) == 1
  mp = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
  assert local_worker_threads(beam.Pipeline(options=PipelineOptions(mp))) == threads_per_worker(2)
  assert local_worker_threads(beam.Pipeline(options=PipelineOptions([]))) == 0


@pytest.mark.skipif(not os.path.exists(os.path.join(SHARED, "landsat8")), reason=f"{SHARED} absent")
def test_speed_grid_tiles_do_not_overlap():
  from benchmarks.speed.base import grid_tiles
  tiles, _ = grid_tiles(6, size=64)
  corners = {(round(t["geo"]["transform"].c), round(t["geo"]["transform"].f)) for t in tiles}
  assert len(corners) == 6
  px = tiles[0]["geo"]["transform"].a
  xs = sorted({c[0] for c in corners})
  assert all(abs((b - a) / px - 64) < 1e-6 for a, b in zip(xs, xs[1:]))
  assert all(t["image"].shape == (64, 64, 3) and t["mask"].any() for t in tiles)


def test_headroom_oracles_recover_what_they_know_and_nothing_else():
  """benchmarks.headroom: a per-window tone error is removed whole by the offset
  oracle; a smooth residual almost whole by a wide smooth oracle, a fine one
  far less; known pixels never change."""
  from benchmarks import headroom
  rng = np.random.default_rng(0)
  truth = rng.random((2, 64, 64, 3))
  holes = np.zeros((2, 64, 64), bool)
  holes[:, 16:48, 10:50] = True
  tone = truth + np.array([0.1, -0.05, 0.02])  # a tone error only
  np.testing.assert_allclose(headroom.offset_oracle(tone, truth, holes)[holes], truth[holes], atol=1e-12)
  yy, xx = np.mgrid[:64, :64]
  smooth = truth + 0.1 * np.sin(xx / 20.0)[None, :, :, None]
  fine = truth + 0.1 * np.sign(np.sin(xx * 1.5))[None, :, :, None]
  for context in (smooth, fine):
    for out in (headroom.offset_oracle(context, truth, holes), headroom.smooth_oracle(context, truth, holes, 4)):
      np.testing.assert_array_equal(out[~holes], context[~holes])
  gain = lambda c, s: headroom.hole_psnr(headroom.smooth_oracle(c, truth, holes, s), truth, holes) - headroom.hole_psnr(
      c, truth, holes)
  assert gain(smooth, 4) > 15 and gain(fine, 4) < 1


def test_a_scene_draws_the_same_clouds_alone_as_in_the_full_run():
  # Seeded by the scene's name, not by its place in the run's list.
  draws = {name: scenes.scene_rng(8, name).integers(0, 1 << 30, 4).tolist() for name in scenes.SCENES}
  for name in scenes.SCENES:
    assert scenes.scene_rng(8, name).integers(0, 1 << 30, 4).tolist() == draws[name]
  assert len({tuple(v) for v in draws.values()}) == len(draws)
  assert scenes.scene_rng(9, "naip2019").integers(0, 1 << 30, 4).tolist() != draws["naip2019"]


def test_scenes_seeds_tabulates_each_draw_and_the_worst():

  def run(seed, delta, block, shifted):
    row = {
        "scene": "s",
        "gdal": {
            "hole_psnr": 20.0
        },
        "cloudfill": {
            "hole_psnr": 20.0 + delta,
            "block": block,
            "block_shifted_grids": shifted
        },
        "context": {
            "block": 0.9
        }
    }
    return {"seed": seed, "scenes": [row]}

  text = scenes_seeds.table([run(8, 0.5, 1.2, [0.8, 1.4]), run(9, -0.25, None, []), {"seed": 10, "scenes": []}])
  row = text.splitlines()[2]
  assert row.startswith("| s | +0.50 | -0.25 | – | -0.25 |"), row
  assert "1.20 (0.80–1.40); push-pull 0.90" in row and row.count("–") >= 2


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "multidate")), reason=f"{SHARED} absent")
def test_guided_scenes_name_a_guide_on_the_same_place_and_bands():
  """`benchmarks.scenes --guided`: each guide exists, overlaps its scene and has
  the bands the scene restores; a scene without one is refused by name."""
  import rasterio
  from rasterio.warp import transform_bounds
  guided_names = [n for n, s in scenes.SCENES.items() if s.guide]
  assert set(guided_names) == {"naip2019", "s2l2a_june", "landsat5_nanjing"}
  for name in guided_names:
    spec = scenes.SCENES[name]
    with rasterio.open(os.path.join(SHARED, spec.path)) as a, rasterio.open(os.path.join(SHARED, spec.guide)) as g:
      assert g.count >= max(spec.bands or (a.count,)) and g.dtypes[0] == a.dtypes[0], name
      gb = transform_bounds(g.crs, a.crs, *g.bounds)
      assert gb[0] < a.bounds.right and a.bounds.left < gb[2] and gb[1] < a.bounds.top and a.bounds.bottom < gb[3], name
  with pytest.raises(SystemExit) as e:
    scenes.main(["--guided", "--scenes", "landsat8", "--data", SHARED])
  assert e.value.code == 2
