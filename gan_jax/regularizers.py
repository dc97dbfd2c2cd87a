"""Discriminator regularisers as pure functions of a critic ``x -> (batch,) logits``.

- ``gradient_penalty``: WGAN-GP (Gulrajani et al. 2017), on random interpolates of real and fake
  examples: E[(‖∇D(x̂)‖ - 1)²], or E[max(0, ‖∇D(x̂)‖ - 1)²] one-sided (their appendix; Petzka et al.
  2018).
- ``r1_penalty``: R1 (Mescheder et al. 2018), E‖∇D(x)‖² on real data. The family applies it lazily,
  every ``r1_interval`` D updates with its weight multiplied by the interval (StyleGAN2).
- ``dragan_penalty``: DRAGAN (Kodali et al. 2017), the two-sided penalty around noisy real data
  x + c·std(x)·U[0, 1) (interpolated towards x, as in the authors' code).
- ``clip_weights``: the original WGAN's weight clipping (Arjovsky et al. 2017).
- Spectral normalisation is a layer wrapper: ``gan_jax.spectral``.

Every random draw is per example (``experiments.rng.example_keys``), so it depends only on the key
and the example's position in the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from experiments import rng

Critic = Callable[[jax.Array], jax.Array]
# Inside the square root: keeps the gradient of ‖g‖ finite where g = 0.
NORM_EPSILON = 1e-12


def per_example_uniform(key: jax.Array, num: int) -> jax.Array:
    """``(num,)`` uniforms in [0, 1), example ``i`` from its own key."""
    return jax.vmap(lambda k: jax.random.uniform(k, ()))(rng.example_keys(key, num))


def broadcast_rows(values: jax.Array, like: jax.Array) -> jax.Array:
    """``(batch,)`` → ``(batch, 1, ..., 1)`` to scale the examples of ``like``."""
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))


def gradient_norms(critic: Critic, x: jax.Array) -> jax.Array:
    """``(batch,)`` norms ‖∇ₓ D(x_i)‖ of each example's logit with respect to its own input.

    The critic must treat examples independently (no batch norm in train mode).
    """
    grads = jax.grad(lambda inputs: jnp.sum(critic(inputs)))(x)
    squares = jnp.sum(jnp.square(grads).reshape(x.shape[0], -1), axis=1)
    return jnp.sqrt(squares + NORM_EPSILON)


def interpolate(real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
    """ε·real + (1 - ε)·fake with ε ~ U[0, 1) drawn per example."""
    eps = broadcast_rows(per_example_uniform(key, real.shape[0]), real)
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(
    critic: Critic,
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
    *,
    one_sided: bool = False,
    target: float = 1.0,
) -> jax.Array:
    """WGAN-GP's mean of (‖∇D(x̂)‖ - target)² (one-sided: of max(0, ·)²) over interpolates x̂."""
    gap = gradient_norms(critic, interpolate(real, fake, key)) - target
    if one_sided:
        gap = jax.nn.relu(gap)
    return jnp.mean(jnp.square(gap))


def r1_penalty(critic: Critic, real: jax.Array) -> jax.Array:
    """R1's mean of ‖∇D(x)‖² over real examples (the family multiplies it by γ/2)."""
    grads = jax.grad(lambda inputs: jnp.sum(critic(inputs)))(real)
    return jnp.mean(jnp.sum(jnp.square(grads).reshape(real.shape[0], -1), axis=1))


def dragan_perturb(real: jax.Array, key: jax.Array, scale: float = 0.5) -> jax.Array:
    """DRAGAN's points: α·x + (1 - α)·(x + scale·std(x)·U[0, 1)), α ~ U[0, 1) per example.

    ``std`` is over the whole batch, as in the authors' code; the noise is drawn per example.
    """
    noise_keys = rng.example_keys(rng.purpose_key(key, "noise"), real.shape[0])
    noise = jax.vmap(lambda k: jax.random.uniform(k, real.shape[1:]))(noise_keys)
    perturbed = real + scale * jnp.std(real) * noise
    return interpolate(real, perturbed, rng.purpose_key(key, "alpha"))


def dragan_penalty(
    critic: Critic, real: jax.Array, key: jax.Array, *, scale: float = 0.5
) -> jax.Array:
    """DRAGAN's mean of (‖∇D(x̂)‖ - 1)² around the real data."""
    points = jax.lax.stop_gradient(dragan_perturb(real, key, scale))
    return jnp.mean(jnp.square(gradient_norms(critic, points) - 1.0))


def clip_weights(params, clip: float):
    """Every parameter clipped to [-clip, clip] (the original WGAN's Lipschitz constraint)."""
    return jax.tree.map(lambda p: jnp.clip(p, -clip, clip), params)
