"""Training, export and data tooling for the cloudfill inpainting model.

Modules (one concept each):

* :mod:`training.partial_conv`: the partial convolution layer.
* :mod:`training.generator`: the context-residual U-Net generator (partial-conv stem).
* :mod:`training.discriminator`: the multi-scale spectral-normalised PatchGAN.
* :mod:`training.losses`: reconstruction and adversarial losses.
* :mod:`training.masks`: synthetic and real-cloud mask generator.
* :mod:`training.scenes`: reading scenes and the held-out-by-area split.
* :mod:`training.data`: the numpy sampler (crops, masks, guide dates, context).
* :mod:`training.bundle`: the self-contained data bundle for a GPU machine.
* :mod:`training.trainer`: the JAX trainer (generator/discriminator steps, validation).
* :mod:`training.train`: the ``cloudfill train`` command.
* :mod:`training.export`: SavedModel / TFLite export (``cloudfill export``).

Nothing here imports from ``pipeline/``; from ``transforms/`` only the numpy
:mod:`transforms.context`, so the model trains on the context it is served.
"""
