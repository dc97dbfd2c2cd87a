"""GAN losses as small pure functions of discriminator logits (means over the batch).

Each loss is a pair ``discriminator(real_logits, fake_logits)`` / ``generator(fake_logits)`` of
functions of ``(batch,)`` logits, both minimised, listed by name in ``LOSSES``. ``D(x) =
sigmoid(logit)`` for the first two; the others read the logit as a score (critic).

- ``minimax`` (Goodfellow et al. 2014): D minimises -log D(x) - log(1 - D(G(z))); G minimises
  log(1 - D(G(z))) (saturates when D wins).
- ``non_saturating`` (same paper): D as minimax; G minimises -log D(G(z)).
- ``least_squares`` (LSGAN, Mao et al. 2017, a-b-c = 0-1-1): D minimises ½(D(x) - 1)² + ½D(G(z))²,
  G minimises ½(D(G(z)) - 1)², on the raw logits.
- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D minimises max(0, 1 - D(x)) + max(0, 1 + D(G(z))),
  G minimises -D(G(z)).
- ``wasserstein`` (Arjovsky et al. 2017): the critic minimises D(G(z)) - D(x), G minimises -D(G(z));
  needs a Lipschitz constraint (weight clipping, a gradient penalty or spectral normalisation).

``auxiliary_classifier`` is ACGAN's (Odena et al. 2017) class cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class GANLoss(NamedTuple):
    discriminator: Callable[[jax.Array, jax.Array], jax.Array]
    generator: Callable[[jax.Array], jax.Array]


def minimax_discriminator(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """-log D(x) - log(1 - D(G(z))) = softplus(-real) + softplus(fake)."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def minimax_generator(fake_logits: jax.Array) -> jax.Array:
    """log(1 - D(G(z))) = -softplus(fake)."""
    return -jnp.mean(jax.nn.softplus(fake_logits))


non_saturating_discriminator = minimax_discriminator


def non_saturating_generator(fake_logits: jax.Array) -> jax.Array:
    """-log D(G(z)) = softplus(-fake)."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def least_squares_discriminator(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """½(D(x) - 1)² + ½D(G(z))²."""
    return 0.5 * jnp.mean(jnp.square(real_logits - 1.0)) + 0.5 * jnp.mean(jnp.square(fake_logits))


def least_squares_generator(fake_logits: jax.Array) -> jax.Array:
    """½(D(G(z)) - 1)²."""
    return 0.5 * jnp.mean(jnp.square(fake_logits - 1.0))


def hinge_discriminator(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z)))."""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator(fake_logits: jax.Array) -> jax.Array:
    """-D(G(z))."""
    return -jnp.mean(fake_logits)


def wasserstein_discriminator(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """D(G(z)) - D(x): minus the critic's estimate of the Wasserstein-1 distance."""
    return jnp.mean(fake_logits) - jnp.mean(real_logits)


wasserstein_generator = hinge_generator


def auxiliary_classifier(class_logits: jax.Array, labels: jax.Array) -> jax.Array:
    """ACGAN's classification loss: the mean cross-entropy of ``labels`` under ``class_logits``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits, labels))


LOSSES = {
    "minimax": GANLoss(minimax_discriminator, minimax_generator),
    "non_saturating": GANLoss(non_saturating_discriminator, non_saturating_generator),
    "least_squares": GANLoss(least_squares_discriminator, least_squares_generator),
    "hinge": GANLoss(hinge_discriminator, hinge_generator),
    "wasserstein": GANLoss(wasserstein_discriminator, wasserstein_generator),
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name]
