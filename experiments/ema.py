"""The one exponential moving average of parameters every family uses (``model.ema_*`` keys).

After update number ``n`` (counting from 1: the state's ``step`` once the update is applied)::

    ema ← d_n · ema + (1 - d_n) · params
    d_n = 0                                        for n ≤ start_step (the EMA copies the weights)
    d_n = decay                                    otherwise, without warm-up
    d_n = min(decay, m / (m + 9)),  m = n - start_step   otherwise, with warm-up

The warm-up (TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` rule) lets a run with a
long EMA horizon average from its first updates instead of carrying the initial weights for
thousands of steps. ``decay = 0`` means no EMA at all: the state keeps none (``None``), so the step
does not write a second copy of the parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# The denominator offset of the warm-up: d = m / (m + WARMUP_OFFSET).
WARMUP_OFFSET = 9.0


def decay_at(
    step: jax.Array | int, decay: float, start_step: int = 0, warmup: bool = False
) -> jax.Array:
    """``d_n`` of the module docstring (float32 scalar) for update number ``step`` (traceable)."""
    n = jnp.asarray(step, jnp.float32) - start_step
    d = jnp.asarray(decay, jnp.float32)
    if warmup:
        d = jnp.minimum(d, n / (n + WARMUP_OFFSET))
    return jnp.where(n > 0, d, 0.0).astype(jnp.float32)


def update(
    ema, params, step: jax.Array | int, decay: float, start_step: int = 0, warmup: bool = False
):
    """The EMA pytree after update number ``step``; None when ``ema`` is None (no EMA kept)."""
    if ema is None:
        return None
    d = decay_at(step, decay, start_step, warmup)
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


def check(decay: float, start_step: int) -> str | None:
    """A one-line problem with ``model.ema_decay`` / ``model.ema_start_step``, or None."""
    if not 0.0 <= decay < 1.0:
        return f"config.model.ema_decay={decay} must be in [0, 1)"
    if start_step < 0:
        return f"config.model.ema_start_step={start_step} must be >= 0"
    return None
