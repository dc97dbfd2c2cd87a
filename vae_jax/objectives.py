"""The VAE objective as small pure functions of per-example arrays (leading axis = batch).

All results are in nats, one value per example; averaging over the batch is the caller's business.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def _sum_per_example(values: jax.Array) -> jax.Array:
    """Sums over every axis but the leading (batch) one: ``(batch, ...) -> (batch,)``."""
    return jnp.sum(values.reshape((values.shape[0], -1)), axis=1)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """Analytic KL(N(mean, diag(exp(logvar))) || N(0, I)) per example, in nats.

    ``KL = 0.5 * sum_j (exp(logvar_j) + mean_j**2 - 1 - logvar_j)``, summed over all non-batch axes
    (the latent dimensions). ``mean`` and ``logvar`` are ``(batch, latent_dim)``; the result is
    ``(batch,)``, non-negative, and 0 exactly where ``mean == 0`` and ``logvar == 0``.
    """
    return 0.5 * _sum_per_example(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar)


def bernoulli_log_prob(logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | logits) under independent Bernoullis with ``p = sigmoid(logits)``, per example.

    Per element ``x * log(sigmoid(l)) + (1 - x) * log(1 - sigmoid(l))``, computed stably as
    ``-x * softplus(-l) - (1 - x) * softplus(l)`` (no ``log(sigmoid)`` round trip, no overflow for
    large ``|l|``), then summed over all non-batch axes. ``logits`` and ``x`` have the same shape
    ``(batch, ...)``; the result is ``(batch,)`` and <= 0. For ``x`` in {0, 1} it is the exact
    log-likelihood; for grey values in [0, 1] it is the negative binary cross-entropy (not a
    normalised density).
    """
    x = x.astype(logits.dtype)
    per_element = -x * jax.nn.softplus(-logits) - (1.0 - x) * jax.nn.softplus(logits)
    return _sum_per_example(per_element)


class ELBOTerms(NamedTuple):
    """Per-example ``(batch,)`` terms of the evidence lower bound, in nats."""

    elbo: jax.Array  # E_q[log p(x | z)] - KL(q(z | x) || p(z)), estimated with the given z draw
    reconstruction: jax.Array  # -log p(x | z): the negative log-likelihood at the z draw
    kl: jax.Array  # KL(q(z | x) || N(0, I)), analytic


def elbo(logits: jax.Array, x: jax.Array, mean: jax.Array, logvar: jax.Array) -> ELBOTerms:
    """The single-sample ELBO estimate of each example and its two terms.

    ``logits`` are the decoder's Bernoulli logits at one posterior draw ``z ~ q(z | x)``
    (``(batch, *image_shape)``), ``x`` the data (same shape), ``mean`` / ``logvar`` the posterior
    parameters (``(batch, latent_dim)``). Returns ``ELBOTerms(elbo, reconstruction, kl)`` with
    ``reconstruction = -bernoulli_log_prob(logits, x)``, ``kl = gaussian_kl(mean, logvar)`` and
    ``elbo = -(reconstruction + kl)``, each ``(batch,)``.
    """
    reconstruction = -bernoulli_log_prob(logits, x)
    kl = gaussian_kl(mean, logvar)
    return ELBOTerms(elbo=-(reconstruction + kl), reconstruction=reconstruction, kl=kl)
