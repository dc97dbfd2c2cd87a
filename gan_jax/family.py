"""The GAN family: a generator and a discriminator updated alternately (see ``experiments.family``).

``make(config)`` checks the config, fills the keys an older config lacks with their documented
defaults and translates it into ``GANFamily``'s explicit arguments (``gan_jax.config``, which lists
the keys read); ``GANFamily`` wires the pure update functions of ``gan_jax.updates`` into the
``Family`` interface and reads no config.

One train step (one engine step) is ``d_steps`` D updates, then one G update, then the EMA update,
all in one compiled function (the D updates unrolled or scanned, ``d_loop``). The batch holds
``d_steps`` consecutive D batches: ``config.batch_size = d_steps * B``, and the G update uses B
latents. Each D update draws its own B latents; in it the fakes carry the real batch's labels (so
that interpolates of a gradient penalty share a label); the G update draws labels uniformly. With
``shared_fakes`` (``d_steps = 1``) the G update instead reuses the D update's latents, labels and G
forward pass (PyTorch's DCGAN example does this), and its gradient flows back through that pass:
one G forward pass less per step; G's batch statistics then come from that pass.

In a D update: the real pass runs D in train mode (batch norm on batch statistics, running averages
updated) and runs spectral normalisation's power iteration (once per D update, stored in the
state); the fake pass and the penalties use the updated vectors without iterating. Batch statistics
of D are updated by both passes (as PyTorch's DCGAN); G's by the G update's pass. The G update runs
D in train mode without keeping anything D updates. Gradient penalties (GP, R1, DRAGAN) need a D
that treats examples independently: they refuse ``discriminator.norm='batch'``. R1 with
``r1_interval = k > 1`` is computed only on the D updates whose number over the run (``step *
d_steps + index``) is a multiple of k, with weight ``k·γ/2`` (StyleGAN2's lazy regularisation);
the logged ``r1_penalty`` is 0 on the others (and a train step logs its D updates' mean).

EMA (``ema_decay > 0``): after each step, ``experiments.ema`` (``ema_decay``, ``ema_start_step``,
``ema_warmup``) over G's parameters *and* its batch-norm running averages (as BigGAN's): a copy
until ``ema_start_step`` updates have been applied, then ``ema ← d·ema + (1 - d)·g``. Evaluation,
grids and ``sample`` use the EMA generator when there is one.

Data: images arrive in [0, 1] and are mapped to [-1, 1], samples mapped back; 2-D points stay in raw
coordinates. Randomness derives from the step key with ``experiments.rng`` purposes
('d_step' + index, 'g_step', 'latent', 'labels', 'augment_*', 'gradient_penalty', 'dragan').
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from experiments import ema as ema_lib
from experiments import rng, sampling
from experiments.errors import ConfigError
from gan_jax import config as gan_config
from gan_jax import toy, updates
from gan_jax.updates import GANHyper, GANNets, Network

TOY_PLOT_SAMPLES = 2500
MAX_CLASSES_IN_GRID = 16

__all__ = ["GANFamily", "GANHyper", "GANNets", "GANState", "Network", "make"]


@flax.struct.dataclass
class GANState:
    step: jax.Array
    generator: Network
    discriminator: Network
    ema: Any  # EMA of the generator's variables ({'params', 'batch_stats'}); None when off


class GANFamily:
    """The ``experiments.family.Family`` functions of one GAN (see the module docstring).

    Holds only static things: ``nets`` (modules, optimisers, latent size, number of classes), ``hp``
    (the update rules' hyper-parameters), the data shape, the EMA settings and, for the 2-D toys,
    ``toy_modes`` (mode centres (K, 2) and their std) for the toy metrics and scatter plots.
    """

    def __init__(
        self,
        nets: GANNets,
        hp: GANHyper,
        *,
        data_shape: tuple[int, ...],
        ema_decay: float = 0.0,
        ema_start_step: int = 0,
        ema_warmup: bool = False,
        toy_modes: tuple[np.ndarray, float] | None = None,
    ):
        self.nets = nets
        self.hp = hp
        self.data_shape = tuple(data_shape)
        self.is_image = len(self.data_shape) == 3  # NHWC images in [0, 1]; else raw vectors
        self.ema_decay = ema_decay
        self.ema_start_step = ema_start_step
        self.ema_warmup = ema_warmup
        self.toy = toy_modes

    @property
    def num_classes(self) -> int:
        return self.nets.num_classes

    @property
    def conditional(self) -> bool:
        """Whether ``sample`` honours labels."""
        return self.nets.num_classes > 0

    # -- pieces ------------------------------------------------------------------------------------

    def sample_labels(self, key: jax.Array, num: int) -> jax.Array | None:
        """Labels drawn uniformly, one per example from its own key (None when unconditional)."""
        return updates.uniform_labels(key, num, self.nets.num_classes)

    def preprocess(self, x: jax.Array) -> jax.Array:
        return x * 2.0 - 1.0 if self.is_image else x

    def postprocess(self, x: jax.Array) -> jax.Array:
        return (x + 1.0) / 2.0 if self.is_image else x

    def _generate(self, state: GANState, key: jax.Array, num: int, labels) -> jax.Array:
        """``num`` outputs of the (EMA) generator in eval mode, from the latents of ``key``."""
        variables = state.ema if state.ema is not None else state.generator.variables()
        z = updates.latents(key, num, self.nets.latent_dim)
        return self.nets.generator.apply(variables, z, labels, train=False)

    # -- the Family interface ----------------------------------------------------------------------

    def init_state(self, key, example_batch) -> GANState:
        shape = tuple(example_batch["x"].shape[1:])
        if shape != self.data_shape:
            keys = "model.image_size and model.channels" if self.is_image else "model.data_dim"
            raise ConfigError(
                f"the data have examples of shape {shape} but the model makes {self.data_shape}: "
                f"set {keys} to match"
            )
        if self.conditional and "label" not in example_batch:
            raise ConfigError(
                f"model.num_classes={self.num_classes} (a conditional GAN) but the data have no labels"
            )
        nets = self.nets
        labels = jnp.zeros((2,), jnp.int32) if self.conditional else None
        generator = updates.init_network(
            nets.generator,
            nets.g_optimizer,
            rng.purpose_key(key, "generator"),
            jnp.zeros((2, nets.latent_dim)),
            labels,
        )
        discriminator = updates.init_network(
            nets.discriminator,
            nets.d_optimizer,
            rng.purpose_key(key, "discriminator"),
            jnp.zeros((2, *self.data_shape)),
            labels,
        )
        return GANState(
            step=jnp.zeros((), jnp.int32),
            generator=generator,
            discriminator=discriminator,
            ema=generator.variables() if self.ema_decay > 0 else None,
        )

    def train_step(self, state: GANState, batch, key):
        real = self.preprocess(batch["x"])
        labels = batch["label"] if self.conditional else None
        g, d, metrics = updates.gan_update(
            state.generator,
            state.discriminator,
            state.step,
            real,
            labels,
            key,
            nets=self.nets,
            hp=self.hp,
        )
        step = state.step + 1
        ema = ema_lib.update(
            state.ema, g.variables(), step, self.ema_decay, self.ema_start_step, self.ema_warmup
        )
        return GANState(step=step, generator=g, discriminator=d, ema=ema), metrics

    def eval_step(self, state: GANState, batch, key):
        real = self.preprocess(batch["x"])
        num = real.shape[0]
        labels = batch["label"] if self.conditional else None
        fake_labels = self.sample_labels(key, num)
        fake = self._generate(state, key, num, fake_labels)
        d = state.discriminator

        def discriminate(x, y):
            outputs, _ = updates.discriminate(
                self.nets.discriminator, d.params, d.collections, x, y, train=False, update=False
            )
            return outputs

        real_logits, real_classes = discriminate(real, labels)
        fake_logits, fake_classes = discriminate(fake, fake_labels)
        metrics = {
            "d_real": jax.nn.sigmoid(real_logits),
            "d_fake": jax.nn.sigmoid(fake_logits),
            "d_real_logit": real_logits,
            "d_fake_logit": fake_logits,
            "d_accuracy": 0.5 * ((real_logits > 0).astype(jnp.float32) + (fake_logits < 0)),
        }
        if self.hp.auxiliary:
            metrics["aux_accuracy_real"] = jnp.argmax(real_classes, -1) == labels
            metrics["aux_accuracy_fake"] = jnp.argmax(fake_classes, -1) == fake_labels
        if self.toy is not None:
            metrics.update(toy.eval_metrics(fake, *self.toy))
        return {name: value.astype(jnp.float32) for name, value in metrics.items()}

    def summarize_eval(self, averages: dict[str, float]) -> dict[str, float]:
        """Toy data: ``modes_covered`` and ``high_quality_fraction`` (see ``gan_jax.toy``)."""
        if self.toy is None:
            return {}
        return toy.summarize(averages, len(self.toy[0]))

    def sample(self, state: GANState, key, num: int, labels=None):
        """``num`` samples of the (EMA) generator, each from its own latent (``fold_in(key, i)``).

        Conditional models use ``labels`` ((num,) int32) or, when None, the engine's one default
        (``experiments.sampling.default_labels``: ``i % num_classes``); unconditional ones ignore
        ``labels``."""
        if not self.conditional:
            labels = None
        elif labels is None:
            labels = jnp.asarray(sampling.default_labels(num, self.num_classes))
        return self.postprocess(self._generate(state, key, num, labels))

    def grids(self, state: GANState, batch, key):
        """``samples``: for images, one sample per grid example (conditional: C x C samples, row r of
        class r, for up to 16 classes); for 2-D toys, a scatter plot of 2500 samples over the modes."""
        if self.toy is not None:
            points = self.sample(state, key, TOY_PLOT_SAMPLES)
            return {"samples": toy.scatter_plot(points, *self.toy)}
        num, labels = batch["x"].shape[0], None
        if self.conditional and self.num_classes <= MAX_CLASSES_IN_GRID:
            num = self.num_classes**2
            labels = jnp.arange(num, dtype=jnp.int32) // self.num_classes
        return {"samples": self.sample(state, key, num, labels)}


def make(config) -> GANFamily:
    """The GAN family a config describes: its missing ``model`` keys get their documented defaults
    (``gan_jax.defaults``), then ``gan_jax.config`` checks it (``ConfigError``) and translates it."""
    config = gan_config.with_model_defaults(config)
    gan_config.check_config(config)
    return GANFamily(**gan_config.family_arguments(config))
