"""GAN losses as small pure functions of discriminator logits (means over the batch).

``discriminator_loss(real_logits, fake_logits)`` and ``generator_loss(fake_logits)`` pairs, by name in
``LOSSES``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class GANLoss(NamedTuple):
    discriminator: callable
    generator: callable


def non_saturating_discriminator(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """-log D(x) - log(1 - D(G(z))) with D = sigmoid(logits): softplus(-real) + softplus(fake)."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_generator(fake_logits: jax.Array) -> jax.Array:
    """-log D(G(z)) (Goodfellow et al. 2014, the non-saturating heuristic): softplus(-fake)."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


LOSSES = {
    "non_saturating": GANLoss(non_saturating_discriminator, non_saturating_generator),
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name]
