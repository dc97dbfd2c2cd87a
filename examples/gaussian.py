"""A diagonal Gaussian fitted by maximum likelihood: the smallest complete model family.

Chosen with ``config.family = 'examples.gaussian'`` (a module path: the engine needs no change; see
``docs/extending.md``, which walks through this file). The model is ``x ~ N(mean, diag(exp(2 *
log_std)))`` over the flattened example; training minimises the negative log-likelihood per
dimension with the optimiser of ``config.optimizer`` (``experiments.optim``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from experiments import optim, rng
from experiments.errors import ConfigError

LOG_2PI = math.log(2 * math.pi)


@struct.dataclass
class GaussianState:
    step: jax.Array  # updates applied so far (the engine reads it)
    params: Any  # {'mean': (d,), 'log_std': (d,)}
    opt_state: Any


def negative_log_likelihood(params, x: jax.Array) -> jax.Array:
    """-log N(x; mean, diag(std²)) of each example, in nats: ``(batch,)``."""
    flat = x.reshape((x.shape[0], -1))
    z = (flat - params["mean"]) * jnp.exp(-params["log_std"])
    return jnp.sum(0.5 * (LOG_2PI + jnp.square(z)) + params["log_std"], axis=1)


class GaussianFamily:
    """The five functions of ``experiments.family.Family``; explicit keyword arguments only."""

    def __init__(self, *, example_shape: tuple[int, ...], optimizer: optax.GradientTransformation):
        self.example_shape = tuple(example_shape)
        self.optimizer = optimizer

    def init_state(self, key, example_batch) -> GaussianState:
        del key  # deterministic start: the standard normal
        if tuple(example_batch["x"].shape[1:]) != self.example_shape:
            raise ConfigError(
                f"config.model.example_shape={self.example_shape} but the data's examples have "
                f"shape {tuple(example_batch['x'].shape[1:])}"
            )
        size = math.prod(self.example_shape)
        params = {"mean": jnp.zeros(size), "log_std": jnp.zeros(size)}
        return GaussianState(jnp.zeros((), jnp.int32), params, self.optimizer.init(params))

    def train_step(self, state: GaussianState, batch, key):
        del key  # nothing random in this update
        loss_fn = lambda params: jnp.mean(negative_log_likelihood(params, batch["x"]))
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = GaussianState(state.step + 1, params, opt_state)
        return new_state, {"loss": loss, "mean_std": jnp.mean(jnp.exp(params["log_std"]))}

    def eval_step(self, state: GaussianState, batch, key):
        del key
        return {"loss": negative_log_likelihood(state.params, batch["x"])}

    def sample(self, state: GaussianState, key, num: int, labels=None):
        del labels  # unconditional
        noise = rng.normal_per_example(key, (num, math.prod(self.example_shape)))
        x = state.params["mean"] + jnp.exp(state.params["log_std"]) * noise
        return x.reshape((num, *self.example_shape))

    def grids(self, state: GaussianState, batch, key):
        if len(self.example_shape) != 3:  # not images: nothing to draw
            return {}
        return {"samples": jnp.clip(self.sample(state, key, batch["x"].shape[0]), 0.0, 1.0)}


def make(config) -> GaussianFamily:
    """Reads ``config.model.example_shape`` and ``config.optimizer``; nothing else."""
    shape = tuple(int(d) for d in config.model.example_shape)
    if not shape or min(shape) < 1:
        raise ConfigError(f"config.model.example_shape={shape} must be a non-empty positive shape")
    return GaussianFamily(example_shape=shape, optimizer=optim.make_optimizer(config.optimizer))
