"""Speed of the restoration pipeline against the bare model and classical fillers.

Issues #4 and #13. A script, not a test: it prints its figures and writes
them as JSON into ``--out`` (default ``benchmarks/results/speed/``). One
module per section: :mod:`.raw`, :mod:`.runs` (pipeline runs; the worker
mode is :mod:`.worker`), :mod:`.fillers`, :mod:`.stages`, :mod:`.profiling`,
:mod:`.gpu`, :mod:`.large`; :mod:`.render` turns result files into Markdown.

Sections (``--sections``, default ``raw,pipeline,fillers,stages``, plus
``gpu`` wherever TensorFlow sees a GPU; ``all`` adds ``profile`` and ``gpu``):

* ``raw``: tiles per second of the SavedModel's ``restore`` signature in a
  tight loop at the pipeline's batch size (and a few others), on the same
  windows the pipeline cuts; also ``serving_default`` (what ``--backend tfx``
  calls) on serialized examples.
* ``pipeline``: ``pipeline.run.run`` on the DirectRunner, single process
  (``--direct_running_mode=in_memory``) and ``multi_processing`` with 2
  workers, with ``--backend native`` and ``--backend tfx``. Each run is a
  fresh interpreter; the figure is restored tiles / seconds from the call of
  ``run()`` (model check, graph construction, model loading, every stage,
  summary) to ``wait_until_finish()`` returning, so interpreter start and
  imports are excluded (they are reported beside it). A second run of the
  first configuration on ``--probe-tiles`` tiles (default 2) gives the fixed
  start-up cost and the marginal (steady-state) rate
  (tiles - probe tiles) / (seconds - probe seconds).
* ``fillers``: the classical fillers of ``benchmarks/fillers.py`` (GDAL
  FillNodata, OpenCV Telea/NS, scikit-image biharmonic, mean fill) on the
  same tiles, one thread; GDAL through ``rasterio.fill.fillnodata`` directly
  when that module is absent.
* ``stages``: each pipeline step's own cost per tile, measured in-process on
  the same tiles (decode, cut, sparsify, the Beam coder round trip at the
  CoGroupByKey, composite, encode + write, measure), against the model's
  time per tile: where the pipeline loses time against the raw loop.
* ``profile``: a py-spy sampling profile of one in_memory native run,
  attributed to the same steps (needs ``pip install py-spy``).
* ``gpu``: when TensorFlow sees a GPU, batch sizes x XLA on/off with the
  SavedModel, and float32 vs mixed_float16 with the generator rebuilt from
  ``training.generator``; on CPU it says it found none.

``--large`` instead times ``cloudfill run`` on large scenes (the real
Landsat 8 scene mirrored up to 2000², 4000², 8000² by default, with tiled
real cloud masks) in a subprocess, with its wall seconds and peak resident
memory (``getrusage(RUSAGE_CHILDREN)``).

Examples::

  .venv/bin/python -m benchmarks.speed --tiles 32                 # ~2 min
  .venv/bin/python -m benchmarks.speed --tiles 192 --sections all
  .venv/bin/python -m benchmarks.speed --large --sizes 2000,4000,8000
  .venv/bin/python -m benchmarks.speed --markdown benchmarks/results/speed/*.json
"""
