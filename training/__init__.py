"""Training, export and data tooling for the cloudfill inpainting model.

Modules (one concept each):

* :mod:`training.partial_conv`: the partial convolution layer.
* :mod:`training.fill`: the cheap in-graph push-pull fill the generator refines.
* :mod:`training.generator`: the partial-convolution U-Net generator.
* :mod:`training.discriminator`: the spectral-normalised PatchGAN.
* :mod:`training.losses`: reconstruction and adversarial losses.
* :mod:`training.masks`: synthetic and real-cloud mask generator.
* :mod:`training.scenes`: reading scenes and the held-out-by-area split.
* :mod:`training.data`: the ``tf.data`` input pipeline.
* :mod:`training.train`: the ``cloudfill train`` command.
* :mod:`training.export`: SavedModel / TFLite export (``cloudfill export``).

Nothing here imports from ``pipeline/`` or ``transforms/``.
"""
