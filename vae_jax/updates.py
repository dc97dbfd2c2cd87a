"""The VAE's estimators, losses and update as pure functions of (params or state, batch, key,
hyper-parameters).

The static things are keyword-only arguments: ``model`` (a ``networks.VAE``), ``likelihood`` (a
``likelihoods.Likelihood``), ``hp`` (``vae_jax.config.Hyperparameters``) and ``optimizer`` (an
optax transformation). ``vae_jax.family.VAEFamily`` only wires them to the engine's interface; a
hybrid family (e.g. a VAE-GAN) calls ``loss`` on its VAE parameters and adds its own terms.

* ``log_weights``: the one IWAE estimator. Given the posterior ``(mean, logvar)`` of a batch, noise
  ``eps`` ``(batch, k, d)`` and the images to score (``repeated_targets``), it returns the
  importance log-weights ``log p(x | z) + β (log p(z) - log q(z | x))`` and ``log p(x | z)``, each
  ``(batch, k)``, with ``z = objectives.reparameterize(mean, logvar, eps)``. The IWAE objective
  (``loss``), ``eval_step``'s ``nll_iwae`` (``eval_metrics``) and the chunked test-set evaluation
  (``vae_jax.evaluation``) all call it; ``objectives.iwae_bound`` turns the weights into the bound.
* ``draws``: ``k`` posterior draws of a batch with the train / eval noise
  (``normal_per_example(purpose_key(key, 'posterior'), (batch, k, d))``) through ``log_weights``.
* ``loss(params, batch, key, step, ...) -> (loss, aux)``: the training objective (ELBO with β,
  free bits, or the IWAE bound) and its per-example terms.
* ``train_update(state, batch, key, ...) -> (state, metrics)``: one optimiser step and the EMA
  (``experiments.ema``).
* ``eval_metrics(params, batch, key, ...)``: the per-example metrics of ``eval_step``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from experiments import ema as ema_lib
from experiments import rng
from experiments.errors import ConfigError
from vae_jax import networks, objectives

__all__ = [
    "Draws",
    "Targets",
    "VAEState",
    "batch_labels",
    "decode",
    "draws",
    "encode",
    "eval_metrics",
    "image_context",
    "log_weights",
    "loss",
    "posterior_noise",
    "repeated_targets",
    "train_update",
]


@struct.dataclass
class VAEState:
    """The whole train state: one pytree."""

    step: jax.Array  # int32 scalar: updates applied so far
    params: Any
    opt_state: Any
    ema_params: Any  # the EMA of params, or None when ema_decay == 0

    @property
    def eval_params(self):
        """The parameters eval, samples, grids and evaluation use: the EMA when one is kept."""
        return self.params if self.ema_params is None else self.ema_params


class Targets(NamedTuple):
    """The images a batch's ``k`` latents per example are scored on: row ``i * k + j`` belongs to
    example ``i`` (``jnp.repeat``)."""

    x: jax.Array  # (batch * k, H, W, C)
    labels: jax.Array | None  # (batch * k,) for a conditional VAE
    context: jax.Array | None  # the autoregressive decoder's causal context of x


class Draws(NamedTuple):
    """``k`` posterior draws per example of a batch (``draws``)."""

    log_w: jax.Array  # (batch, k) importance log-weights (annealed by β when β != 1)
    log_px: jax.Array  # (batch, k) log p(x | z)
    mean: jax.Array  # (batch, d) of q(z | x)
    logvar: jax.Array  # (batch, d)


def batch_labels(batch: dict, num_classes: int) -> jax.Array | None:
    """The batch's labels for a conditional VAE (``num_classes > 0``), else None."""
    if not num_classes:
        return None
    if "label" not in batch:
        raise ConfigError(
            f"config.model.num_classes={num_classes} (a conditional VAE) but the data has no "
            "'label'"
        )
    return batch["label"]


def encode(params, x: jax.Array, labels=None, *, model: networks.VAE):
    """The posterior ``(mean, logvar)`` of ``x``, each ``(batch, d)``."""
    return model.apply({"params": params}, x, labels, method=networks.VAE.encode)


def image_context(params, x: jax.Array, repeats: int = 1, *, model: networks.VAE):
    """The autoregressive decoder's causal context of ``x`` (None for a plain decoder), computed
    once per image; each row is repeated ``repeats`` times (``jnp.repeat``) for ``repeats`` latents
    scored per image."""
    if model.autoregressive is None:
        return None
    context = model.apply({"params": params}, x, method=networks.VAE.context)
    return context if repeats == 1 else jnp.repeat(context, repeats, axis=0)


def decode(params, z: jax.Array, labels=None, context=None, *, model: networks.VAE):
    """The decoder output (the likelihood's parameters) at latents ``z``; an autoregressive
    decoder also needs the ``context`` of the images it scores (one row per row of ``z``)."""
    return model.apply({"params": params}, z, labels, context, method=networks.VAE.decode)


def repeated_targets(params, x: jax.Array, labels, k: int, *, model: networks.VAE) -> Targets:
    """``Targets`` for ``k`` latents per example of ``x``: the images, labels and context repeated
    ``k`` times (the context computed once per image)."""
    return Targets(
        x=jnp.repeat(x, k, axis=0),
        labels=None if labels is None else jnp.repeat(labels, k, axis=0),
        context=image_context(params, x, repeats=k, model=model),
    )


def log_weights(
    params,
    posterior: tuple[jax.Array, jax.Array],
    eps: jax.Array,
    targets: Targets,
    *,
    model: networks.VAE,
    likelihood,
    kl_weight: float | jax.Array = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """The IWAE estimator's terms: ``(log_w, log_px)``, each ``(batch, k)``.

    ``posterior`` is ``(mean, logvar)`` of q(z | x) ``(batch, d)``, ``eps`` the standard normal
    noise ``(batch, k, d)`` of the draws ``z = objectives.reparameterize(mean, logvar, eps)``,
    ``targets`` the examples' images repeated ``k`` times (``repeated_targets(..., k)``). ``log_px``
    is ``log p(x | z)``; ``log_w = log_px + kl_weight * (log p(z) - log q(z | x))``
    (``objectives.importance_log_weights``; ``kl_weight = 1``: the weights of the marginal
    likelihood, whose ``objectives.iwae_bound`` is the IWAE bound).
    """
    mean, logvar = posterior
    batch, k, latent_dim = eps.shape
    z = objectives.reparameterize(mean[:, None, :], logvar[:, None, :], eps)
    output = decode(
        params, z.reshape((batch * k, latent_dim)), targets.labels, targets.context, model=model
    )
    log_px = likelihood.log_prob(output, targets.x).reshape((batch, k))
    return objectives.importance_log_weights(log_px, z, mean, logvar, kl_weight), log_px


def posterior_noise(key: jax.Array, batch: int, k: int, latent_dim: int, dtype=jnp.float32):
    """The noise ``(batch, k, d)`` of ``draws``: example ``i``'s from ``fold_in(purpose_key(key,
    'posterior'), i)``, so it does not depend on how the batch is split over devices."""
    return rng.normal_per_example(rng.purpose_key(key, "posterior"), (batch, k, latent_dim), dtype)


def draws(
    params,
    x: jax.Array,
    labels,
    key: jax.Array,
    k: int,
    *,
    model: networks.VAE,
    likelihood,
    kl_weight: float | jax.Array = 1.0,
) -> Draws:
    """``k`` reparameterised draws per example (noise ``posterior_noise(key, ...)``) and their
    ``log_weights``."""
    mean, logvar = encode(params, x, labels, model=model)
    eps = posterior_noise(key, x.shape[0], k, mean.shape[-1], mean.dtype)
    targets = repeated_targets(params, x, labels, k, model=model)
    log_w, log_px = log_weights(
        params,
        (mean, logvar),
        eps,
        targets,
        model=model,
        likelihood=likelihood,
        kl_weight=kl_weight,
    )
    return Draws(log_w, log_px, mean, logvar)


def loss(
    params, batch: dict, key: jax.Array, step: jax.Array | int, *, model, likelihood, hp
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The training objective of ``batch`` at update ``step``, to minimise: ``(loss, aux)``.

    With ``hp.num_samples = k`` draws per example and β = ``hp.kl_weight_at(step)``:
    ``'elbo'``: ``mean_batch(reconstruction) + β * KL term`` (the KL term ``mean_batch(kl)``, or
    ``objectives.free_bits_kl`` with ``hp.free_bits > 0``); ``'iwae'``: ``-mean_batch(iwae_bound)``
    of the β-annealed weights. ``aux``: per example ``(batch,)`` ``reconstruction`` (-log p(x | z)
    averaged over the draws) and ``kl`` (analytic), the scalar ``kl_weight`` β, and for
    ``'iwae'`` the per-example ``iwae_bound``.
    """
    x, labels = batch["x"], batch_labels(batch, model.num_classes)
    beta = hp.kl_weight_at(step)
    drawn = draws(
        params, x, labels, key, hp.num_samples, model=model, likelihood=likelihood, kl_weight=beta
    )
    kl_per_dim = objectives.gaussian_kl_per_dim(drawn.mean, drawn.logvar)
    kl = jnp.sum(kl_per_dim, axis=1)
    reconstruction = -jnp.mean(drawn.log_px, axis=1)
    aux = {"reconstruction": reconstruction, "kl": kl, "kl_weight": beta}
    if hp.objective == "iwae":
        bound = objectives.iwae_bound(drawn.log_w)
        aux["iwae_bound"] = bound
        return -jnp.mean(bound), aux
    if hp.free_bits > 0:
        kl_term = objectives.free_bits_kl(kl_per_dim, hp.free_bits)
    else:
        kl_term = jnp.mean(kl)
    return jnp.mean(reconstruction) + beta * kl_term, aux


def train_update(
    state: VAEState, batch: dict, key: jax.Array, *, model, likelihood, optimizer, hp
) -> tuple[VAEState, dict[str, jax.Array]]:
    """One update of ``state`` on ``loss``: the optimiser step, then the EMA (``experiments.ema``;
    none with ``hp.ema_decay == 0``: the state then keeps no second copy of the parameters, which
    each step had to write; ``bench/vae_mlp``: 0.05-0.5 ms of a 5 ms step).

    Metrics (float32 scalars): batch means of ``loss``, ``elbo`` (``-(reconstruction + kl)``),
    ``reconstruction``, ``kl``, and ``kl_weight``, ``grad_norm`` (global L2 norm of the loss
    gradient, before the optimiser), ``iwae_bound`` for the IWAE objective.
    """
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(
        state.params, batch, key, state.step, model=model, likelihood=likelihood, hp=hp
    )
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = ema_lib.update(
        state.ema_params, params, state.step + 1, hp.ema_decay, hp.ema_start_step, hp.ema_warmup
    )
    metrics = {
        "loss": value,
        "elbo": -jnp.mean(aux["reconstruction"] + aux["kl"]),
        "reconstruction": jnp.mean(aux["reconstruction"]),
        "kl": jnp.mean(aux["kl"]),
        "kl_weight": aux["kl_weight"],
        "grad_norm": optax.tree.norm(grads),
    }
    if "iwae_bound" in aux:
        metrics["iwae_bound"] = jnp.mean(aux["iwae_bound"])
    metrics = {name: value.astype(jnp.float32) for name, value in metrics.items()}
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema_params
    )
    return new_state, metrics


def eval_metrics(
    params, batch: dict, key: jax.Array, *, model, likelihood, hp
) -> dict[str, jax.Array]:
    """Per-example ``(batch,)`` float32 metrics of ``batch``: ``loss`` (the negative ELBO, nats;
    whatever β training uses), ``elbo``, ``reconstruction`` (averaged over ``max(1,
    hp.iwae_k_train_eval)`` draws), ``kl`` (analytic) and, with ``hp.iwae_k_train_eval = k > 0``,
    ``nll_iwae`` (-IWAE bound of the same k draws)."""
    x, labels = batch["x"], batch_labels(batch, model.num_classes)
    k = max(1, hp.iwae_k_train_eval)
    drawn = draws(params, x, labels, key, k, model=model, likelihood=likelihood)
    reconstruction = -jnp.mean(drawn.log_px, axis=1)
    kl = objectives.gaussian_kl(drawn.mean, drawn.logvar)
    metrics = {
        "loss": reconstruction + kl,
        "elbo": -(reconstruction + kl),
        "reconstruction": reconstruction,
        "kl": kl,
    }
    if hp.iwae_k_train_eval > 0:
        metrics["nll_iwae"] = -objectives.iwae_bound(drawn.log_w)
    return {name: value.astype(jnp.float32) for name, value in metrics.items()}
