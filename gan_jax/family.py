"""The GAN family: a generator and a discriminator updated alternately (see ``experiments.family``).

Config keys read here:
  model.latent_dim, model.image_size, model.channels, model.loss (a name in ``gan_jax.losses``),
  model.ema_decay (0 disables the EMA of the generator weights),
  model.generator.{features, weight_init}, model.discriminator.{features, norm, weight_init},
  optimizer.generator and optimizer.discriminator (``experiments.optim`` configs).
Data images arrive in [0, 1] and are mapped to [-1, 1]; samples are mapped back.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from experiments import optim, rng
from experiments.errors import ConfigError
from gan_jax import losses, networks


@flax.struct.dataclass
class Network:
    """One network's parameters, BatchNorm statistics and optimiser state."""

    params: Any
    batch_stats: Any
    opt_state: Any

    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


@flax.struct.dataclass
class GANState:
    step: jax.Array
    generator: Network
    discriminator: Network
    ema_params: Any  # EMA of generator params; None when model.ema_decay == 0


def apply_train(module: nn.Module, net: Network, params, inputs) -> tuple[jax.Array, Any]:
    """Train-mode forward pass; returns outputs and the updated BatchNorm statistics."""
    outputs, updates = module.apply(
        {"params": params, "batch_stats": net.batch_stats},
        inputs,
        train=True,
        mutable=["batch_stats"],
    )
    return outputs, updates.get("batch_stats", {})


class GANFamily:
    def __init__(self, config):
        model = config.model
        self.latent_dim = model.latent_dim
        self.image_shape = (model.image_size, model.image_size, model.channels)
        self.ema_decay = model.ema_decay
        self.loss = losses.get_loss(model.loss)
        self.generator = networks.DCGANGenerator(
            image_size=model.image_size, channels=model.channels, **model.generator
        )
        self.discriminator = networks.DCGANDiscriminator(**model.discriminator)
        self.g_optimizer = optim.make_optimizer(config.optimizer.generator)
        self.d_optimizer = optim.make_optimizer(config.optimizer.discriminator)

    def latents(self, key: jax.Array, num: int) -> jax.Array:
        return rng.normal_per_example(rng.purpose_key(key, "latent"), (num, self.latent_dim))

    def init_state(self, key, example_batch) -> GANState:
        if tuple(example_batch["x"].shape[1:]) != self.image_shape:
            raise ConfigError(
                f"data images have shape {tuple(example_batch['x'].shape[1:])} but the model "
                f"makes {self.image_shape}: set model.image_size and model.channels to match"
            )
        z = jnp.zeros((2, self.latent_dim))
        g_vars = self.generator.init(rng.purpose_key(key, "generator"), z)
        d_vars = self.discriminator.init(
            rng.purpose_key(key, "discriminator"), jnp.zeros((2, *self.image_shape))
        )

        def network(variables, optimizer):
            params = variables["params"]
            return Network(params, variables.get("batch_stats", {}), optimizer.init(params))

        generator = network(g_vars, self.g_optimizer)
        return GANState(
            step=jnp.zeros((), jnp.int32),
            generator=generator,
            discriminator=network(d_vars, self.d_optimizer),
            ema_params=generator.params if self.ema_decay > 0 else None,
        )

    def train_step(self, state: GANState, batch, key):
        real = batch["x"] * 2.0 - 1.0
        z = self.latents(key, real.shape[0])
        g, d = state.generator, state.discriminator
        fake, g_stats = apply_train(self.generator, g, g.params, z)

        def d_loss_fn(d_params):
            real_logits, stats = apply_train(self.discriminator, d, d_params, real)
            d_after_real = d.replace(batch_stats=stats)
            fake_logits, stats = apply_train(
                self.discriminator, d_after_real, d_params, jax.lax.stop_gradient(fake)
            )
            loss = self.loss.discriminator(real_logits, fake_logits)
            return loss, (stats, real_logits, fake_logits)

        (d_loss, (d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
            d_loss_fn, has_aux=True
        )(d.params)
        d = self._update(d, d_grads, self.d_optimizer, d_stats)

        def g_loss_fn(g_params):
            fake, _ = apply_train(self.generator, g, g_params, z)
            fake_logits, _ = apply_train(self.discriminator, d, d.params, fake)
            return self.loss.generator(fake_logits)

        g_loss, g_grads = jax.value_and_grad(g_loss_fn)(g.params)
        g = self._update(g, g_grads, self.g_optimizer, g_stats)
        ema = state.ema_params
        if ema is not None:
            ema = optax.incremental_update(g.params, ema, 1.0 - self.ema_decay)
        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
            "d_grad_norm": optax.tree.norm(d_grads),
            "g_grad_norm": optax.tree.norm(g_grads),
        }
        new_state = GANState(step=state.step + 1, generator=g, discriminator=d, ema_params=ema)
        return new_state, metrics

    @staticmethod
    def _update(net: Network, grads, optimizer, batch_stats) -> Network:
        updates, opt_state = optimizer.update(grads, net.opt_state, net.params)
        return Network(optax.apply_updates(net.params, updates), batch_stats, opt_state)

    def _generate(self, state: GANState, z: jax.Array) -> jax.Array:
        params = state.ema_params if state.ema_params is not None else state.generator.params
        variables = {"params": params, "batch_stats": state.generator.batch_stats}
        return self.generator.apply(variables, z, train=False)

    def eval_step(self, state: GANState, batch, key):
        real = batch["x"] * 2.0 - 1.0
        fake = self._generate(state, self.latents(key, real.shape[0]))
        d_vars = state.discriminator.variables()
        real_logits = self.discriminator.apply(d_vars, real, train=False)
        fake_logits = self.discriminator.apply(d_vars, fake, train=False)
        return {
            "d_real": jax.nn.sigmoid(real_logits),
            "d_fake": jax.nn.sigmoid(fake_logits),
            "d_accuracy": 0.5 * ((real_logits > 0).astype(jnp.float32) + (fake_logits < 0)),
        }

    def sample(self, state: GANState, key, num: int, labels=None):
        return (self._generate(state, self.latents(key, num)) + 1.0) / 2.0

    def grids(self, state: GANState, batch, key):
        return {"samples": self.sample(state, key, batch["x"].shape[0])}


def make(config) -> GANFamily:
    return GANFamily(config)
