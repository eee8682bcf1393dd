"""One run's configuration, typed: the parsed options turned once into specs.

:func:`from_options` reads the ``argparse.Namespace`` of
:func:`pipeline.options.parse` (flags over a ``--config`` profile over the
specs' own defaults) together with the model's card, and returns a frozen
:class:`RunConfig` holding the validated ``*Spec`` of every stage. Nothing
downstream reads the namespace: :func:`pipeline.graph.build` wires the stages
from this object alone.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Optional

from model_loader.contract import ModelCard
from transforms.decode import DecodeSpec
from transforms.footprint import FootprintSpec
from transforms.geotiff_out import TiffSpec
from transforms.guide import GuideSpec
from transforms.guide import check_template as check_guide_template
from transforms.infer import InferSpec
from transforms.masks import MaskSpec
from transforms.match import check_template
from transforms.neighbours import NeighbourSpec
from transforms.prepare import PrepareSpec
from transforms.scene_write import SceneWriteSpec
from transforms.tiling import WindowSpec
from transforms.write import WriteSpec

# Tiles of one grid take context from this many windows of their neighbours by
# default: on a cloud across tile borders the step at the border fell from 813
# (tiles alone) to 137 DN with one window of margin and 18 with two (8 whole).
NEIGHBOUR_WINDOWS = 2


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """The model a run restores with, as the summary records it.

  Attributes:
    name, version, bands, window, overlap: From its card.
    uri: Where it was loaded from (resolved: the packaged default's path).
    weights_sha256: Its weights' hash ("" for older cards).
  """

  name: str
  version: str
  uri: str
  bands: int
  window: int
  overlap: int
  weights_sha256: str = ""

  def as_dict(self) -> dict[str, Any]:
    """What ``summary.json`` and ``manifest.json`` say about the model."""
    return {
        "name": self.name,
        "version": self.version,
        "uri": self.uri,
        "bands": self.bands,
        "window": self.window,
        "overlap": self.overlap
    }


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Everything one ``cloudfill run`` does, stage by stage.

  Attributes:
    run_id: Names this run's metrics and dead-letter files.
    output_dir: The run's output folder (local, ``gs://``, ``s3://``).
    images: The ``--images`` glob (``{date}`` filled).
    masks: The ``--masks`` template, or None (masks from the image itself).
    since: Only inputs modified at or after this time (epoch seconds), or None.
    overwrite: Redo tiles whose output is up to date.
    model: The model's card and location.
    decode: Decoding, masks, band selection, the tile/scene threshold.
    prepare: Footprint, fill limit, guide, neighbours.
    window: Window size, overlap and value range.
    preview: Write ``DIR/preview/`` quicklooks.
    infer: ``RunInference`` handler, batching, resource hints.
    value_range: ``--value-range`` (LO, HI), or None for the dtype's range.
    write: Writing and measuring in-memory tiles.
    scene_write: Writing and measuring streamed scenes.
  """

  run_id: str
  output_dir: str
  images: str
  masks: Optional[str]
  since: Optional[float]
  overwrite: bool
  model: ModelInfo
  decode: DecodeSpec
  prepare: PrepareSpec
  window: WindowSpec
  preview: bool
  infer: InferSpec
  value_range: Optional[tuple[float, float]]
  write: WriteSpec
  scene_write: SceneWriteSpec

  def with_model_inputs(self, model_inputs: tuple[str, ...]) -> "RunConfig":
    """The same run, for a model whose ``restore`` takes ``model_inputs``."""
    return dataclasses.replace(self, infer=dataclasses.replace(self.infer, model_inputs=tuple(model_inputs)))


def mask_spec(args: argparse.Namespace) -> MaskSpec:
  return MaskSpec(source=args.mask_source,
                  threshold=args.mask_threshold,
                  dilate=args.dilate,
                  nodata=args.nodata,
                  bits=tuple(args.mask_bits or ()),
                  values=tuple(args.mask_values or ()))


def guide_spec(args: argparse.Namespace, vrange: Optional[tuple[float, float]]) -> Optional[GuideSpec]:
  """The ``--guide`` spec, its templates checked (``{date}`` filled), or None.

  Raises:
    ValueError: a placeholder that cannot be resolved.
  """
  if not args.guide:
    return None
  masks = check_guide_template(args.guide_masks, args.date) if args.guide_masks else None
  return GuideSpec(templates=tuple(check_guide_template(t, args.date) for t in args.guide),
                   mask_template=masks,
                   bands=tuple(args.bands or ()),
                   value_range=vrange,
                   resampling=args.guide_resampling)


def reference_template(args: argparse.Namespace) -> Optional[str]:
  """``--reference`` with ``{date}`` filled (as ``--images`` and ``--masks``), checked."""
  if not args.reference:
    return None
  reference = args.reference.replace("{date}", args.date) if args.date else args.reference
  return check_template(reference, "--reference")


def prepare_spec(args: argparse.Namespace, card: ModelCard, mask: MaskSpec,
                 vrange: Optional[tuple[float, float]]) -> PrepareSpec:
  margin = NEIGHBOUR_WINDOWS * card.window if args.neighbour_margin is None else args.neighbour_margin
  neighbours = (NeighbourSpec(margin=margin, bands=tuple(args.bands or
                                                         ()), mask=mask, nodata=args.nodata) if margin > 0 else None)
  return PrepareSpec(footprint=FootprintSpec(nodata=args.nodata,
                                             border_only=args.nodata_border,
                                             nan_is_nodata=not args.nan_as_missing,
                                             mask_is_nodata=args.mask_source == "nodata",
                                             max_fill_distance=args.max_fill_distance),
                     guide=guide_spec(args, vrange),
                     neighbours=neighbours,
                     value_range=vrange)


def infer_spec(args: argparse.Namespace, card: ModelCard, model_uri: str) -> InferSpec:
  return InferSpec(
      # None = the packaged default, resolved where the model loads (a worker's
      # install path differs from the launcher's). tfx-bsl needs a path now.
      model_uri=args.model if args.backend in ("native", "tflite") else model_uri,
      backend=args.backend,
      overlap=card.overlap,
      min_batch_size=args.min_batch_size,
      max_batch_size=args.max_batch_size,
      max_batch_duration_secs=args.max_batch_duration_secs,
      large_model=args.large_model,
      model_copies=args.model_copies,
      accelerator=args.accelerator)


def from_options(args: argparse.Namespace, card: ModelCard, model_uri: str, run_id: str) -> RunConfig:
  """The run that parsed options ``args`` ask for, with the model of ``card``.

  ``infer.model_inputs`` is ``InferSpec``'s default (``image``, ``mask``) until
  :meth:`RunConfig.with_model_inputs` sets what the loaded model declares.

  Raises:
    ValueError: a bad template, band list or value range (usage errors).
  """
  vrange = tuple(args.value_range) if args.value_range else None
  mask = mask_spec(args)
  tiff = TiffSpec(cog=bool(args.cog), options=tuple(args.co or ()))
  window = (card.window, card.overlap)
  return RunConfig(run_id=run_id,
                   output_dir=args.output,
                   images=args.images,
                   masks=args.masks,
                   since=args.since,
                   overwrite=bool(args.overwrite),
                   model=ModelInfo(name=card.name,
                                   version=card.version,
                                   uri=model_uri,
                                   bands=card.bands,
                                   window=card.window,
                                   overlap=card.overlap,
                                   weights_sha256=card.weights_sha256),
                   decode=DecodeSpec(mask=mask,
                                     bands=tuple(args.bands or ()),
                                     model_bands=card.bands,
                                     nan_as_missing=args.nan_as_missing,
                                     scene_pixels=args.scene_pixels,
                                     max_pixels=args.max_pixels,
                                     value_range=vrange,
                                     extra_bands=getattr(args, "extra_bands", None) or DecodeSpec.extra_bands),
                   prepare=prepare_spec(args, card, mask, vrange),
                   window=WindowSpec(size=card.window, overlap=card.overlap, value_range=vrange),
                   preview=not args.no_preview,
                   infer=infer_spec(args, card, model_uri),
                   value_range=vrange,
                   write=WriteSpec(output_dir=args.output,
                                   model_version=card.version,
                                   evaluate=args.evaluate,
                                   reference_template=reference_template(args),
                                   value_range=vrange,
                                   tiff=tiff,
                                   weights_sha256=card.weights_sha256,
                                   window=window),
                   scene_write=SceneWriteSpec(output_dir=args.output,
                                              model_version=card.version,
                                              evaluate=args.evaluate,
                                              value_range=vrange,
                                              tiff=tiff,
                                              weights_sha256=card.weights_sha256,
                                              window=window))
