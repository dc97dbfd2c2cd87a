"""The VAE objectives as small pure functions of per-example arrays (leading axis = batch).

All results are in nats, one value per example unless stated; averaging over the batch is the
caller's business. The observation models (Bernoulli, Gaussian, discretised logistic) live in
``vae_jax.likelihoods``.

* ``reparameterize``: the one posterior draw ``z = mean + exp(logvar / 2) * eps`` (Kingma & Welling
  2014) that every part of the family uses.
* ``gaussian_kl`` / ``gaussian_kl_per_dim``: analytic KL(q || N(0, I)) of a diagonal Gaussian q.
* ``kl_weight_schedule``: β of β-VAE (Higgins et al. 2017) with a linear or cosine warm-up from
  ``start`` to ``weight`` over ``warmup_steps`` (Bowman et al. 2016; Sønderby et al. 2016), a pure
  function of the step.
* ``free_bits_kl``: the KL term with free bits (Kingma et al. 2016): ``sum_j max(λ, E_batch KL_j)``.
* ``diagonal_gaussian_log_prob``, ``importance_log_weights``, ``iwae_bound``: the importance-weighted
  bound of Burda et al. (2016), ``log (1/k) sum_i p(x, z_i) / q(z_i | x)``, z_i ~ q(z | x).

The ELBO of a draw is ``-(reconstruction + KL)`` with ``reconstruction = -log p(x | z)`` (the
likelihood's ``log_prob``) and the analytic ``gaussian_kl``; ``vae_jax.updates`` puts the pieces
together with the networks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vae_jax.likelihoods import sum_per_example

__all__ = [
    "diagonal_gaussian_log_prob",
    "free_bits_kl",
    "gaussian_kl",
    "gaussian_kl_per_dim",
    "importance_log_weights",
    "iwae_bound",
    "kl_weight_schedule",
    "reparameterize",
]

LOG_2PI = math.log(2 * math.pi)
SCHEDULES = ("linear", "cosine")


def reparameterize(mean: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
    """The reparameterised posterior draw ``z = mean + exp(logvar / 2) * eps`` (arguments broadcast).

    ``eps ~ N(0, I)`` is the caller's (``experiments.rng`` decides which key draws it); for ``k``
    draws per example pass ``mean[:, None, :]`` and ``logvar[:, None, :]`` with ``eps`` ``(batch,
    k, d)``. ``z`` is differentiable in ``mean`` and ``logvar``.
    """
    return mean + jnp.exp(0.5 * logvar) * eps


def gaussian_kl_per_dim(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean_j, exp(logvar_j)) || N(0, 1)) of each latent dimension: ``(batch, d)``, >= 0."""
    return 0.5 * (jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """Analytic KL(N(mean, diag(exp(logvar))) || N(0, I)) per example, in nats.

    ``KL = 0.5 * sum_j (exp(logvar_j) + mean_j**2 - 1 - logvar_j)``, summed over all non-batch axes
    (the latent dimensions). ``mean`` and ``logvar`` are ``(batch, latent_dim)``; the result is
    ``(batch,)``, non-negative, and 0 exactly where ``mean == 0`` and ``logvar == 0``.
    """
    return sum_per_example(gaussian_kl_per_dim(mean, logvar))


def kl_weight_schedule(
    step: jax.Array | int,
    *,
    weight: float = 1.0,
    warmup_steps: int = 0,
    start: float = 0.0,
    shape: str = "linear",
) -> jax.Array:
    """The KL weight β at update ``step`` (float32 scalar; works on traced steps).

    ``warmup_steps == 0``: ``weight`` at every step. Otherwise it rises from ``start`` at step 0 to
    ``weight`` at ``warmup_steps`` and stays there; ``shape`` is ``'linear'`` or ``'cosine'``
    (``start + (weight - start) * (1 - cos(pi * t)) / 2`` with ``t = step / warmup_steps``).
    """
    if shape not in SCHEDULES:
        raise ValueError(f"unknown KL schedule shape {shape!r}; expected one of {SCHEDULES}")
    if warmup_steps <= 0:
        return jnp.asarray(weight, jnp.float32)
    t = jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)
    if shape == "cosine":
        t = 0.5 * (1.0 - jnp.cos(jnp.pi * t))
    return (start + (weight - start) * t).astype(jnp.float32)


def free_bits_kl(kl_per_dim: jax.Array, free_bits: float) -> jax.Array:
    """The batch's KL term with free bits λ (Kingma et al. 2016, the "KL per group" variant with
    one group per latent dimension): ``sum_j max(λ, mean_batch KL_j)``, a scalar in nats per example.

    A dimension whose batch-average KL is below λ nats contributes the constant λ (so no gradient
    pushes it further towards the prior); ``λ = 0`` gives ``mean_batch sum_j KL_j``, the plain term.
    ``kl_per_dim`` is ``(batch, d)`` (``gaussian_kl_per_dim``).
    """
    return jnp.sum(jnp.maximum(free_bits, jnp.mean(kl_per_dim, axis=0)))


def diagonal_gaussian_log_prob(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(z; mean, diag(exp(logvar))) summed over the last axis (arguments broadcast)."""
    return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar), axis=-1)


def importance_log_weights(
    log_px_given_z: jax.Array,
    z: jax.Array,
    mean: jax.Array,
    logvar: jax.Array,
    kl_weight: float | jax.Array = 1.0,
) -> jax.Array:
    """``log p(x | z_i) + β (log p(z_i) - log q(z_i | x))`` for each of ``k`` draws: ``(batch, k)``.

    ``log_px_given_z`` is ``(batch, k)``, ``z`` is ``(batch, k, d)``, ``mean`` / ``logvar`` of q are
    ``(batch, d)``, ``p(z) = N(0, I)``. ``β = 1`` (the default) gives the importance weights of the
    marginal likelihood; another β is the annealed objective (used only during a KL warm-up).
    """
    log_pz = diagonal_gaussian_log_prob(z, 0.0, 0.0)
    log_qz = diagonal_gaussian_log_prob(z, mean[:, None, :], logvar[:, None, :])
    return log_px_given_z + kl_weight * (log_pz - log_qz)


def iwae_bound(log_weights: jax.Array, *, k: int | None = None, axis: int = 1) -> jax.Array:
    """The importance-weighted bound ``logsumexp_i(log w_i) - log k`` of each example: ``(batch,)``.

    ``log_weights`` is ``(batch, k)``. ``k = 1`` is the single-sample ELBO; the bound is
    non-decreasing in ``k`` in expectation and tends to log p(x) (Burda et al. 2016).

    A caller that streams the ``k`` weights in chunks passes the log-sum-exps of its chunks along
    ``axis`` and the total ``k`` (default: the size of ``axis``): ``logsumexp`` of the chunks'
    log-sum-exps is the log-sum-exp of all the weights.
    """
    k = log_weights.shape[axis] if k is None else k
    return jax.nn.logsumexp(log_weights, axis=axis) - math.log(k)
