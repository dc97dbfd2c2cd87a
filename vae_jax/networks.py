"""VAE networks: a diagonal-Gaussian encoder q(z | x) and a Bernoulli-logits decoder p(x | z).

Every module is built from explicit keyword arguments (never from a whole config); ``build_vae``
is the one place that maps names (``'mlp'`` / ``'conv'``) to modules. Images are NHWC float32.

* ``MLPEncoder``: flatten → ``MLP(hidden_widths)`` → activation → Dense(latent) mean and Dense(latent)
  log-variance heads. With ``hidden_widths=(500,)`` and ``latent_dim=20`` this is the network of
  Kingma & Welling (2014) and of Flax's VAE example; ``(200, 200)`` with ``'tanh'`` and latent 50 is
  Burda et al. (2016)'s one-stochastic-layer model.
* ``MLPDecoder``: ``MLP((*hidden_widths, prod(image_shape)))`` (activation between layers, none after
  the last) → logits reshaped to ``image_shape``.
* ``ConvEncoder``: ``DownConv(f)`` → activation for each ``f`` of ``conv_features`` → flatten →
  Dense(hidden) → activation → mean / log-variance heads. Each ``DownConv`` halves the side, so the
  image side must be divisible by ``2 ** len(conv_features)`` (4 for the default ``(32, 64)``).
* ``ConvDecoder``: Dense(hidden) → activation → Dense(s' * s' * conv_features[-1]) → activation →
  reshape → ``UpConv`` back through ``reversed(conv_features[:-1])`` with activations → ``UpConv(C)``
  logits, where ``s' = side / 2 ** len(conv_features)`` and ``C`` the image channels.
* ``VAE``: ``__call__(x, key) -> (logits, mean, logvar)`` with reparameterised z; ``encode(x)`` and
  ``decode(z)`` for ``apply(..., method=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments import layers, rng
from experiments.errors import ConfigError
from experiments.layers import MLP, DownConv, UpConv


def reparameterize(key: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """A posterior draw ``z = mean + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``.

    ``eps`` row ``i`` comes from example ``i``'s own key (``rng.normal_per_example``), so the draw of
    an example depends only on ``key`` and its position in the global batch, not on the batch size
    or on how many devices share the batch.
    """
    eps = rng.normal_per_example(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


class MLPEncoder(nn.Module):
    """q(z | x) = N(mean, diag(exp(logvar))) from flattened pixels through dense layers."""

    latent_dim: int
    hidden_widths: Sequence[int] = (500,)
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = x.reshape((x.shape[0], -1))
        if self.hidden_widths:
            h = MLP(tuple(self.hidden_widths), self.activation, self.kernel_init, name="hidden")(h)
            h = layers.activation(self.activation)(h)
        mean = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name="mean")(h)
        logvar = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name="logvar")(h)
        return mean, logvar


class MLPDecoder(nn.Module):
    """Bernoulli logits of p(x | z) of shape ``(batch, *image_shape)`` through dense layers."""

    image_shape: Sequence[int]
    hidden_widths: Sequence[int] = (500,)
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        widths = (*self.hidden_widths, math.prod(self.image_shape))
        logits = MLP(widths, self.activation, self.kernel_init, name="layers")(z)
        return logits.reshape((z.shape[0], *self.image_shape))


class ConvEncoder(nn.Module):
    """q(z | x) through stride-2 convolutions, one dense layer, then mean / log-variance heads."""

    latent_dim: int
    conv_features: Sequence[int] = (32, 64)
    hidden: int = 256
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        act = layers.activation(self.activation)
        h = x
        for features in self.conv_features:
            h = act(DownConv(features, kernel_init=self.kernel_init)(h))
        h = h.reshape((h.shape[0], -1))
        h = act(nn.Dense(self.hidden, kernel_init=self.kernel_init)(h))
        mean = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name="mean")(h)
        logvar = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name="logvar")(h)
        return mean, logvar


class ConvDecoder(nn.Module):
    """Bernoulli logits of p(x | z) through two dense layers and stride-2 transposed convolutions."""

    image_shape: Sequence[int]
    conv_features: Sequence[int] = (32, 64)
    hidden: int = 256
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        act = layers.activation(self.activation)
        height, width, channels = self.image_shape
        factor = 2 ** len(self.conv_features)
        small = (height // factor, width // factor, self.conv_features[-1])
        h = act(nn.Dense(self.hidden, kernel_init=self.kernel_init)(z))
        h = act(nn.Dense(math.prod(small), kernel_init=self.kernel_init)(h))
        h = h.reshape((z.shape[0], *small))
        for features in reversed(self.conv_features[:-1]):
            h = act(UpConv(features, kernel_init=self.kernel_init)(h))
        return UpConv(channels, kernel_init=self.kernel_init)(h)


class VAE(nn.Module):
    """An encoder and a decoder joined by the reparameterisation trick."""

    encoder: nn.Module
    decoder: nn.Module

    def __call__(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(logits, mean, logvar)``: decoder logits at one posterior draw per example (from
        ``key``, see ``reparameterize``) and the posterior parameters."""
        mean, logvar = self.encode(x)
        return self.decode(reparameterize(key, mean, logvar)), mean, logvar

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The posterior ``(mean, logvar)``, each ``(batch, latent_dim)``."""
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        """Bernoulli logits ``(batch, *image_shape)`` for latents ``z`` of shape ``(batch, latent_dim)``."""
        return self.decoder(z)


def build_vae(
    *,
    encoder: str,
    image_shape: Sequence[int],
    latent_dim: int,
    activation: str = "relu",
    hidden_widths: Sequence[int] = (500,),
    conv_features: Sequence[int] = (32, 64),
    hidden: int = 256,
    kernel_init: str = "default",
) -> VAE:
    """A ``VAE`` of the named architecture (``'mlp'`` or ``'conv'``); see the module docstring.

    ``image_shape`` is ``(height, width, channels)``. ``hidden_widths`` is used by ``'mlp'``;
    ``conv_features`` and ``hidden`` by ``'conv'``. Raises ``ConfigError`` on an unknown
    architecture, activation or initialiser, or an image side the convolutions cannot halve
    ``len(conv_features)`` times.
    """
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3:
        raise ConfigError(f"image_shape must be (height, width, channels); got {image_shape}")
    if latent_dim <= 0:
        raise ConfigError(f"latent_dim must be positive; got {latent_dim}")
    try:
        layers.activation(activation)
        init = layers.initializer(kernel_init)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if encoder == "mlp":
        widths = tuple(int(w) for w in hidden_widths)
        return VAE(
            encoder=MLPEncoder(latent_dim, widths, activation, init),
            decoder=MLPDecoder(image_shape, widths, activation, init),
        )
    if encoder == "conv":
        features = tuple(int(f) for f in conv_features)
        if not features:
            raise ConfigError("conv_features must name at least one convolution width")
        factor = 2 ** len(features)
        if image_shape[0] % factor or image_shape[1] % factor:
            raise ConfigError(
                f"the conv VAE halves the image side {len(features)} times; image_shape "
                f"{image_shape} has a side not divisible by {factor}"
            )
        return VAE(
            encoder=ConvEncoder(latent_dim, features, hidden, activation, init),
            decoder=ConvDecoder(image_shape, features, hidden, activation, init),
        )
    raise ConfigError(f"unknown encoder {encoder!r}; expected 'mlp' or 'conv'")
