"""The VAE family: a Gaussian-latent, Bernoulli-likelihood variational autoencoder trained on the ELBO.

``make(config) -> VAEFamily`` implements ``experiments.family.Family``. The model is Kingma & Welling
(2014): q(z | x) = N(mean(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x | z) = independent
Bernoullis with logits from the decoder; one reparameterised posterior draw per example and step,
analytic KL.

Config keys read (``vae_jax.defaults.default_model_config``, re-exported here, lists them with
their defaults):

``config.model``
    ``encoder``: ``'mlp'`` | ``'conv'`` (the decoder mirrors it; see ``vae_jax.networks``).
    ``image_shape``: ``(height, width, channels)`` of the data, e.g. ``(28, 28, 1)``. The decoder's
    output shape and ``sample`` need it before any data is seen, so it is read from the config; and
    ``init_state`` raises ``ConfigError`` when the example batch's images have another shape.
    ``latent_dim``: dimension of z.
    ``hidden_widths``: tuple of dense widths of the MLP encoder; the MLP decoder uses the same widths.
    ``conv_features``: tuple of channel widths of the conv encoder's stride-2 convolutions (the
    decoder uses them reversed); the image side must be divisible by ``2 ** len(conv_features)``.
    ``hidden``: width of the conv encoder's and decoder's dense layer.
    ``activation``: a name from ``experiments.layers.ACTIVATIONS``.
    ``kernel_init``: a name from ``experiments.layers.INITIALIZERS``.
    ``likelihood``: ``'bernoulli'`` (the only one so far; anything else is a ``ConfigError``).
    ``kl_weight``: β multiplying the KL term in the loss (1.0 = the ELBO).
``config.optimizer``
    As in ``experiments.optim`` (``make_optimizer``).

Metrics. ``train_step``: batch means of ``loss`` = reconstruction + kl_weight * kl (the negative ELBO
per example in nats when ``kl_weight == 1``), ``elbo``, ``reconstruction`` (-log p(x | z)), ``kl``,
and ``grad_norm`` (global L2 norm of the loss gradient, before the optimiser). ``eval_step``: the same
four terms per example, ``(batch,)``, each a single-sample estimate.

Randomness (``experiments.rng``): the posterior noise is ``normal_per_example(purpose_key(key,
'posterior'), ...)``, one key per example position, so it does not depend on how the batch is split
over devices; prior samples use ``purpose_key(key, 'prior')``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from experiments import optim, rng
from experiments.errors import ConfigError
from vae_jax import networks, objectives
from vae_jax.defaults import default_model_config

LIKELIHOODS = ("bernoulli",)
NUM_RECONSTRUCTIONS = 32  # inputs shown (each next to its reconstruction) in the grid
NUM_PRIOR_SAMPLES = 64

__all__ = ["VAEFamily", "VAEState", "default_model_config", "make"]


@struct.dataclass
class VAEState:
    """The whole train state: one pytree."""

    step: jax.Array  # int32 scalar: updates applied so far
    params: Any
    opt_state: Any


class VAEFamily:
    """The five functions of ``experiments.family.Family`` for one VAE config.

    Holds only static things (the Flax module, the optax transformation, shapes and weights); all
    mutable quantities live in ``VAEState``.
    """

    def __init__(
        self,
        model: networks.VAE,
        optimizer: optax.GradientTransformation,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        kl_weight: float = 1.0,
    ):
        self.model = model
        self.optimizer = optimizer
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.kl_weight = kl_weight

    # -- pieces ------------------------------------------------------------------------------------

    def _terms(self, params, x: jax.Array, key: jax.Array) -> objectives.ELBOTerms:
        """Per-example ELBO terms of ``x`` with the posterior draw of ``purpose_key(key, 'posterior')``."""
        logits, mean, logvar = self.model.apply(
            {"params": params}, x, rng.purpose_key(key, "posterior")
        )
        return objectives.elbo(logits, x, mean, logvar)

    def _loss(self, terms: objectives.ELBOTerms) -> jax.Array:
        """Per-example loss: reconstruction + kl_weight * kl."""
        return terms.reconstruction + self.kl_weight * terms.kl

    def decode_means(self, params, z: jax.Array) -> jax.Array:
        """Bernoulli means ``sigmoid(decoder(z))`` in the NHWC image layout, in [0, 1]."""
        logits = self.model.apply({"params": params}, z, method=networks.VAE.decode)
        return jax.nn.sigmoid(logits)

    # -- the Family interface ----------------------------------------------------------------------

    def init_state(self, key: jax.Array, example_batch: dict) -> VAEState:
        x = example_batch["x"]
        if tuple(x.shape[1:]) != self.image_shape:
            raise ConfigError(
                f"config.model.image_shape={self.image_shape} but the data's images have shape "
                f"{tuple(x.shape[1:])}"
            )
        params = self.model.init(
            {"params": rng.purpose_key(key, "params")},
            jnp.zeros((1, *self.image_shape), jnp.float32),
            rng.purpose_key(key, "posterior"),
        )["params"]
        return VAEState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params)
        )

    def train_step(self, state: VAEState, batch: dict, key: jax.Array):
        x = batch["x"]

        def loss_fn(params):
            terms = self._terms(params, x, key)
            return jnp.mean(self._loss(terms)), terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "elbo": jnp.mean(terms.elbo),
            "reconstruction": jnp.mean(terms.reconstruction),
            "kl": jnp.mean(terms.kl),
            "grad_norm": optax.tree.norm(grads),
        }
        metrics = {name: value.astype(jnp.float32) for name, value in metrics.items()}
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    def eval_step(self, state: VAEState, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        terms = self._terms(state.params, batch["x"], key)
        metrics = {
            "loss": self._loss(terms),
            "elbo": terms.elbo,
            "reconstruction": terms.reconstruction,
            "kl": terms.kl,
        }
        return {name: value.astype(jnp.float32) for name, value in metrics.items()}

    def sample(
        self, state: VAEState, key: jax.Array, num: int, labels: jax.Array | None = None
    ) -> jax.Array:
        """``num`` (a Python int) draws z ~ N(0, I) decoded to Bernoulli means, NHWC in [0, 1].

        ``labels`` is ignored: the model is unconditional. Row ``i`` depends only on ``key`` and ``i``.
        """
        del labels
        z = rng.normal_per_example(rng.purpose_key(key, "prior"), (num, self.latent_dim))
        return self.decode_means(state.params, z)

    def grids(self, state: VAEState, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        """``reconstructions``: the first up to 32 inputs of ``batch``, each followed by the Bernoulli
        mean decoded at its posterior mean (deterministic), as ``(2 * n, H, W, C)``; an even number of
        grid columns keeps each pair side by side. ``prior_samples``: 64 ``sample``s."""
        x = batch["x"][:NUM_RECONSTRUCTIONS]
        mean, _ = self.model.apply({"params": state.params}, x, method=networks.VAE.encode)
        reconstructions = self.decode_means(state.params, mean)
        pairs = jnp.stack([x.astype(jnp.float32), reconstructions], axis=1)
        return {
            "reconstructions": pairs.reshape((2 * x.shape[0], *self.image_shape)),
            "prior_samples": self.sample(state, key, NUM_PRIOR_SAMPLES),
        }


def make(config) -> VAEFamily:
    """The VAE family a config describes (see the module docstring for the keys)."""
    model_config = config.model
    missing = sorted(key for key in default_model_config() if key not in model_config)
    if missing:
        raise ConfigError(
            f"config.model lacks {', '.join(missing)}; start it from "
            "vae_jax.family.default_model_config()"
        )
    if model_config.likelihood not in LIKELIHOODS:
        raise ConfigError(
            f"config.model.likelihood={model_config.likelihood!r}; expected one of {LIKELIHOODS}"
        )
    kl_weight = float(model_config.kl_weight)
    if kl_weight < 0:
        raise ConfigError(f"config.model.kl_weight must be >= 0; got {kl_weight}")
    image_shape = tuple(int(d) for d in model_config.image_shape)
    model = networks.build_vae(
        encoder=model_config.encoder,
        image_shape=image_shape,
        latent_dim=int(model_config.latent_dim),
        activation=model_config.activation,
        hidden_widths=tuple(model_config.hidden_widths),
        conv_features=tuple(model_config.conv_features),
        hidden=int(model_config.hidden),
        kernel_init=model_config.kernel_init,
    )
    return VAEFamily(
        model,
        optim.make_optimizer(config.optimizer),
        image_shape=image_shape,
        latent_dim=int(model_config.latent_dim),
        kl_weight=kl_weight,
    )
