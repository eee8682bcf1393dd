"""The GAN trainer: a generator step, a discriminator step and validation.

Runs under the JAX backend (``KERAS_BACKEND=jax``) with Keras 3's stateless
API: the models are the backend-agnostic ones of :mod:`training.generator`
and :mod:`training.discriminator`, their variables travel as lists of
arrays, and each step is one ``jax.jit``-compiled function (XLA), on a GPU
wherever JAX sees one, else on the CPU. The structure follows keras-io's
GAN ``train_step`` and LaMa's trainer: the losses of one step live in a
method, not in closures of ``main()``.

Losses (:mod:`training.losses`): L1 on the holes of the composite,
hole-boundary total variation, and after ``warmup`` steps an adversarial
term (hinge or LSGAN) from a multi-scale PatchGAN plus discriminator
feature matching.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from training import losses as L
from training.defaults import ADVERSARIAL, RECONSTRUCTION


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """Loss weights and optimiser settings.

  Attributes:
    lr: Generator learning rate (Adam); the discriminator uses the same.
    hole_weight: L1 weight on hole pixels.
    tv_weight: Hole-boundary total variation weight.
    gan: ``"none"``, ``"hinge"`` or ``"lsgan"``.
    adv_weight: Adversarial weight (after ``warmup`` generator steps).
    fm_weight: Feature-matching weight (with the adversarial term).
    loss: Hole reconstruction loss: ``"l1"`` or ``"mse"`` (what hole PSNR
      measures).
    ema: Decay of an exponential moving average of the generator's weights
      (0: none). With it, validation and the saved weights are the average's.
    clipnorm: Global gradient-norm clip of the generator (0: none).
  """

  lr: float = 1e-3
  hole_weight: float = 6.0
  tv_weight: float = 0.01
  gan: str = "none"
  adv_weight: float = 0.01
  fm_weight: float = 1.0
  loss: str = "l1"
  ema: float = 0.0
  clipnorm: float = 0.0

  def __post_init__(self):
    if self.gan not in ("none",) + ADVERSARIAL:
      raise ValueError(f"gan must be none or one of {ADVERSARIAL}, got {self.gan!r}")
    if self.lr <= 0:
      raise ValueError("lr must be positive")
    if self.loss not in RECONSTRUCTION:
      raise ValueError(f"loss must be one of {RECONSTRUCTION}, got {self.loss!r}")
    if not 0.0 <= self.ema < 1.0:
      raise ValueError("ema must be in [0, 1)")
    if self.clipnorm < 0:
      raise ValueError("clipnorm must be >= 0")


def _inputs(batch: dict) -> dict:
  return {k: batch[k] for k in ("image", "mask", "context", "guide", "guide_mask")}


class Trainer:
  """Owns the models, optimisers and jitted steps.

  Args:
    generator: A built :class:`training.generator.CloudfillGenerator`.
    discriminator: A built :class:`training.discriminator.MultiScaleDiscriminator`
      (or None when ``spec.gan == "none"``).
    spec: The :class:`TrainSpec`.
  """

  def __init__(self, generator, discriminator, spec: TrainSpec):
    import jax  # pylint: disable=import-outside-toplevel
    import keras  # pylint: disable=import-outside-toplevel
    if keras.backend.backend() != "jax":
      raise RuntimeError("the trainer runs under the JAX backend: set KERAS_BACKEND=jax")
    self.gen, self.disc, self.spec = generator, discriminator, spec
    beta_1 = 0.9 if spec.gan == "none" else 0.5
    self.g_opt = keras.optimizers.Adam(spec.lr, beta_1=beta_1, beta_2=0.999, global_clipnorm=spec.clipnorm or None)
    self.g_opt.build(generator.trainable_variables)
    self.d_opt = None
    if discriminator is not None:
      self.d_opt = keras.optimizers.Adam(spec.lr, beta_1=0.5, beta_2=0.999)
      self.d_opt.build(discriminator.trainable_variables)
    self._lr_index = [i for i, v in enumerate(self.g_opt.variables) if v.path.endswith("learning_rate")][0]
    self.generator_step = jax.jit(self._generator_step, static_argnames=("adversarial",), donate_argnums=(0,))
    self.discriminator_step = jax.jit(self._discriminator_step, donate_argnums=(0,))
    self._predict = jax.jit(self._predict_fn)

  # --- state ------------------------------------------------------------------

  def init_state(self) -> dict[str, list]:
    """The variables of models and optimisers as arrays (and, with ``spec.ema``,
    ``g_ema``: the moving average of the generator's trainable weights)."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    s = {
        "g_tv": [v.value for v in self.gen.trainable_variables],
        "g_ntv": [v.value for v in self.gen.non_trainable_variables],
        "g_opt": [v.value for v in self.g_opt.variables]
    }
    if self.spec.ema:
      s["g_ema"] = [jnp.array(v.value, copy=True) for v in self.gen.trainable_variables]
    if self.disc is not None:
      s.update(d_tv=[v.value for v in self.disc.trainable_variables],
               d_ntv=[v.value for v in self.disc.non_trainable_variables],
               d_opt=[v.value for v in self.d_opt.variables])
    return s

  def set_lr(self, state: dict, lr: float) -> dict:
    """``state`` with the learning rate of both optimisers set to ``lr``."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    out = dict(state)
    for key in ("g_opt", "d_opt"):
      if key in out:
        opt = list(out[key])
        opt[self._lr_index] = jnp.asarray(lr, opt[self._lr_index].dtype)
        out[key] = opt
    return out

  @staticmethod
  def generator_weights(state: dict) -> list:
    """The generator weights that are validated and saved: the moving average
    when there is one, else the trained weights."""
    return state.get("g_ema", state["g_tv"])

  def write_back(self, state: dict) -> None:
    """Copies ``state`` into the Keras models (before saving weights); the
    generator gets :meth:`generator_weights`."""
    for v, a in zip(self.gen.trainable_variables, self.generator_weights(state)):
      v.assign(a)
    for v, a in zip(self.gen.non_trainable_variables, state["g_ntv"]):
      v.assign(a)
    if self.disc is not None:
      for v, a in zip(self.disc.trainable_variables, state["d_tv"]):
        v.assign(a)
      for v, a in zip(self.disc.non_trainable_variables, state["d_ntv"]):
        v.assign(a)

  # --- steps --------------------------------------------------------------------

  def _generator_loss(self, g_tv, g_ntv, d_tv, d_ntv, batch, adversarial):
    s = self.spec
    out, g_ntv = self.gen.stateless_call(g_tv, g_ntv, _inputs(batch), training=True)
    target, mask = batch["target"], batch["mask"]
    comp = L.composite(target, out, mask)
    hole = L.hole_reconstruction(s.loss, target, out, mask)
    tv = L.tv_hole_boundary(target, out, mask)
    loss = s.hole_weight * hole + s.tv_weight * tv
    logs = {f"{s.loss}_hole": hole, "tv": tv}
    if adversarial:
      (fake_logits, fake_feats), _ = self.disc.stateless_call(d_tv, d_ntv, (comp, mask))
      (_, real_feats), _ = self.disc.stateless_call(d_tv, d_ntv, (target, mask))
      adv = L.g_loss(s.gan, fake_logits)
      fm = L.feature_matching(real_feats, fake_feats)
      loss = loss + s.adv_weight * adv + s.fm_weight * s.adv_weight * fm
      logs.update(g_adv=adv, fm=fm)
    logs["g_loss"] = loss
    return loss, (g_ntv, logs)

  def _generator_step(self, state, batch, adversarial=False):
    import jax  # pylint: disable=import-outside-toplevel
    grad_fn = jax.value_and_grad(self._generator_loss, has_aux=True)
    (_, (g_ntv, logs)), grads = grad_fn(state["g_tv"], state["g_ntv"], state.get("d_tv"), state.get("d_ntv"), batch,
                                        adversarial)
    g_tv, g_opt = self.g_opt.stateless_apply(state["g_opt"], grads, state["g_tv"])
    new = dict(state, g_tv=g_tv, g_ntv=g_ntv, g_opt=g_opt)
    if self.spec.ema:
      d = self.spec.ema
      new["g_ema"] = [d * e + (1.0 - d) * w for e, w in zip(state["g_ema"], g_tv)]
    return new, logs

  def _discriminator_loss(self, d_tv, d_ntv, real, fake, mask):
    (real_logits, _), d_ntv = self.disc.stateless_call(d_tv, d_ntv, (real, mask), training=True)
    (fake_logits, _), d_ntv = self.disc.stateless_call(d_tv, d_ntv, (fake, mask), training=True)
    loss = L.d_loss(self.spec.gan, real_logits, fake_logits)
    return loss, d_ntv

  def _discriminator_step(self, state, batch):
    import jax  # pylint: disable=import-outside-toplevel
    out, _ = self.gen.stateless_call(state["g_tv"], state["g_ntv"], _inputs(batch))
    fake = jax.lax.stop_gradient(L.composite(batch["target"], out, batch["mask"]))
    grad_fn = jax.value_and_grad(self._discriminator_loss, has_aux=True)
    (loss, d_ntv), grads = grad_fn(state["d_tv"], state["d_ntv"], batch["target"], fake, batch["mask"])
    d_tv, d_opt = self.d_opt.stateless_apply(state["d_opt"], grads, state["d_tv"])
    return dict(state, d_tv=d_tv, d_ntv=d_ntv, d_opt=d_opt), {"d_loss": loss}

  def _predict_fn(self, g_tv, g_ntv, inputs):
    out, _ = self.gen.stateless_call(g_tv, g_ntv, inputs)
    return out

  def train_step(self, state, batch, adversarial: bool = False) -> tuple[dict, dict]:
    """One discriminator step (when adversarial) and one generator step."""
    logs: dict[str, Any] = {}
    if adversarial:
      state, d_logs = self.discriminator_step(state, batch)
      logs.update(d_logs)
    state, g_logs = self.generator_step(state, batch, adversarial=adversarial)
    logs.update(g_logs)
    return state, logs

  # --- validation ---------------------------------------------------------------

  def predict(self, state, inputs: dict, batch: int = 16) -> np.ndarray:
    outs = []
    n = len(inputs["image"])
    for i in range(0, n, batch):
      part = {k: v[i:i + batch] for k, v in _inputs(inputs).items()}
      outs.append(np.asarray(self._predict(self.generator_weights(state), state["g_ntv"], part), np.float32))
    return np.concatenate(outs)

  def validate(self, state, sets: dict[str, dict]) -> dict[str, float]:
    """Hole PSNR of the model and of its context alone, per validation set,
    and the realism distance (gradient-magnitude histograms) of each."""
    out: dict[str, float] = {}
    for name, vs in sets.items():
      pred = np.clip(self.predict(state, vs), 0.0, 1.0)
      t, m = vs["target"], vs["mask"]
      comp = t * (1 - m) + pred * m
      out[f"{name}_hole_psnr_db"] = float(_psnr(comp, t, m))
      out[f"{name}_context_hole_psnr_db"] = float(_psnr(vs["context"], t, m))
      out[f"{name}_grad_hist_dist"] = L.gradient_histogram_distance(t, comp, m)
      out[f"{name}_context_grad_hist_dist"] = L.gradient_histogram_distance(t, vs["context"], m)
    return out


def _psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
  """Pooled hole PSNR (dB, peak 1) over a set."""
  se = float((((a - b)**2) * m).sum())
  n = float(m.sum()) * a.shape[-1]
  return 10.0 * np.log10(1.0 / max(se / max(n, 1.0), 1e-12))


def cosine_lr(base: float, fraction: float, warmup: float = 0.02, floor: float = 0.02) -> float:
  """Learning rate at ``fraction`` (0…1) of the run: linear warm-up, cosine decay."""
  if fraction < warmup:
    return base * max(fraction / warmup, 0.05)
  f = min(1.0, (fraction - warmup) / max(1e-9, 1.0 - warmup))
  return base * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * f)))


def set_mixed_precision(policy: Optional[str]) -> None:
  """``mixed_bfloat16`` (GPU) or None (float32)."""
  import keras  # pylint: disable=import-outside-toplevel
  keras.mixed_precision.set_global_policy(policy or "float32")
