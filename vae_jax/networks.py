"""VAE networks: a diagonal-Gaussian encoder q(z | x[, y]) and a decoder of the likelihood's
parameters p(x | z[, y]).

Every module is built from explicit keyword arguments (never from a whole config); ``build_vae``
is the one place that maps names (``'mlp'`` / ``'conv'``) to modules. Images are NHWC float32.

* ``MLPEncoder``: flatten (→ concatenate the condition) → ``MLP(hidden_widths)`` → activation →
  Dense(latent) mean and Dense(latent) log-variance heads. With ``hidden_widths=(500,)`` and
  ``latent_dim=20`` this is the network of Kingma & Welling (2014) and of Flax's VAE example;
  ``(200, 200)`` with ``'tanh'`` and latent 50 is Burda et al. (2016)'s one-stochastic-layer model.
* ``MLPDecoder``: (z ⊕ condition) → ``MLP((*reversed(hidden_widths), prod(output_shape)))``
  (activation between layers, none after the last) → reshaped to ``output_shape`` → + a per-pixel
  ``output_bias``. The decoder mirrors the encoder, so ``(512, 256)`` means 784-512-256-z-256-512-784.
* ``ConvEncoder``: ``DownConv(f)`` → activation for each ``f`` of ``conv_features`` → flatten
  (⊕ condition) → Dense(hidden) → activation → mean / log-variance heads. Each ``DownConv`` halves
  the side, so the side must be divisible by ``2 ** len(conv_features)``: 28 px with ``(32, 64)``
  (→ 7x7), 32 px with ``(32, 64, 128)`` (→ 4x4), 64 px with ``(32, 32, 64, 64)`` (→ 4x4).
* ``ConvDecoder``: (z ⊕ condition) → Dense(hidden) → activation → Dense(s' * s' * conv_features[-1])
  → activation → reshape → ``UpConv`` back through ``reversed(conv_features[:-1])`` with
  activations → ``UpConv(output channels)`` → + ``output_bias``, where ``s' = side / 2 **
  len(conv_features)``.
* ``VAE``: ``__call__(x, key, labels=None) -> (output, mean, logvar)`` with one reparameterised z
  per example; ``encode(x, labels)`` and ``decode(z, labels)`` for ``apply(..., method=...)``. With
  ``num_classes > 0`` it is a conditional VAE (Sohn et al. 2015): the one-hot label is an input of
  both the encoder and the decoder.

The decoder's output has ``channels * params_per_channel`` channels (the likelihood's parameters,
see ``vae_jax.likelihoods``). ``output_bias`` (``(H, W, channels * params_per_channel)``, zeros at
``init``) is the per-pixel offset of the output; the family sets it from the data mean at init
(``output_bias_init='none'`` leaves it out, as in the plain Kingma & Welling network).
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


def with_condition(h: jax.Array, condition: jax.Array | None) -> jax.Array:
    """``h`` (batch, features) with the condition's columns appended (unchanged when None)."""
    if condition is None:
        return h
    return jnp.concatenate([h, condition.astype(h.dtype)], axis=-1)


class OutputBias(nn.Module):
    """Adds a learned per-pixel bias of ``shape`` (zeros at init; see ``vae_jax.family``)."""

    shape: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.param("bias", nn.initializers.zeros, tuple(self.shape))


class MLPEncoder(nn.Module):
    """q(z | x) = N(mean, diag(exp(logvar))) from flattened pixels through dense layers."""

    latent_dim: int
    hidden_widths: Sequence[int] = (500,)
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")

    @nn.compact
    def __call__(
        self, x: jax.Array, condition: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        h = with_condition(x.reshape((x.shape[0], -1)), condition)
        if self.hidden_widths:
            h = MLP(tuple(self.hidden_widths), self.activation, self.kernel_init, name="hidden")(h)
            h = layers.activation(self.activation)(h)
        mean = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name="mean")(h)
        logvar = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name="logvar")(h)
        return mean, logvar


class MLPDecoder(nn.Module):
    """The likelihood's parameters ``(batch, *output_shape)`` of p(x | z) through dense layers."""

    output_shape: Sequence[int]
    hidden_widths: Sequence[int] = (500,)  # the encoder's widths; used in reverse order
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")
    output_bias: bool = True

    @nn.compact
    def __call__(self, z: jax.Array, condition: jax.Array | None = None) -> jax.Array:
        widths = (*reversed(tuple(self.hidden_widths)), math.prod(self.output_shape))
        h = MLP(widths, self.activation, self.kernel_init, name="layers")(
            with_condition(z, condition)
        )
        h = h.reshape((z.shape[0], *self.output_shape))
        if not self.output_bias:
            return h
        return OutputBias(tuple(self.output_shape), name="output_bias")(h)


class ConvEncoder(nn.Module):
    """q(z | x) through stride-2 convolutions, one dense layer, then mean / log-variance heads."""

    latent_dim: int
    conv_features: Sequence[int] = (32, 64)
    hidden: int = 256
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")

    @nn.compact
    def __call__(
        self, x: jax.Array, condition: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        act = layers.activation(self.activation)
        h = x
        for features in self.conv_features:
            h = act(DownConv(features, kernel_init=self.kernel_init)(h))
        h = with_condition(h.reshape((h.shape[0], -1)), condition)
        h = act(nn.Dense(self.hidden, kernel_init=self.kernel_init)(h))
        mean = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name="mean")(h)
        logvar = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name="logvar")(h)
        return mean, logvar


class ConvDecoder(nn.Module):
    """The likelihood's parameters of p(x | z) through two dense layers and stride-2 transposed
    convolutions."""

    output_shape: Sequence[int]
    conv_features: Sequence[int] = (32, 64)
    hidden: int = 256
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")
    output_bias: bool = True

    @nn.compact
    def __call__(self, z: jax.Array, condition: jax.Array | None = None) -> jax.Array:
        act = layers.activation(self.activation)
        height, width, channels = self.output_shape
        factor = 2 ** len(self.conv_features)
        small = (height // factor, width // factor, self.conv_features[-1])
        h = act(nn.Dense(self.hidden, kernel_init=self.kernel_init)(with_condition(z, condition)))
        h = act(nn.Dense(math.prod(small), kernel_init=self.kernel_init)(h))
        h = h.reshape((z.shape[0], *small))
        for features in reversed(self.conv_features[:-1]):
            h = act(UpConv(features, kernel_init=self.kernel_init)(h))
        h = UpConv(channels, kernel_init=self.kernel_init)(h)
        if not self.output_bias:
            return h
        return OutputBias(tuple(self.output_shape), name="output_bias")(h)


class VAE(nn.Module):
    """An encoder and a decoder joined by the reparameterisation trick; conditional on a class label
    (one-hot, input of both networks) when ``num_classes > 0``."""

    encoder: nn.Module
    decoder: nn.Module
    num_classes: int = 0

    def condition(self, labels: jax.Array | None) -> jax.Array | None:
        """The one-hot condition of ``labels`` (None for an unconditional VAE)."""
        if not self.num_classes:
            return None
        if labels is None:
            raise ValueError("a conditional VAE needs labels")
        return jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)

    def __call__(
        self, x: jax.Array, key: jax.Array, labels: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(output, mean, logvar)``: decoder output at one posterior draw per example (from
        ``key``, see ``reparameterize``) and the posterior parameters."""
        mean, logvar = self.encode(x, labels)
        return self.decode(reparameterize(key, mean, logvar), labels), mean, logvar

    def encode(self, x: jax.Array, labels: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """The posterior ``(mean, logvar)``, each ``(batch, latent_dim)``."""
        return self.encoder(x, self.condition(labels))

    def decode(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """The likelihood's parameters ``(batch, H, W, C * params_per_channel)`` for latents ``z``
        ``(batch, latent_dim)``."""
        return self.decoder(z, self.condition(labels))


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
    params_per_channel: int = 1,
    num_classes: int = 0,
    output_bias: bool = True,
) -> VAE:
    """A ``VAE`` of the named architecture (``'mlp'`` or ``'conv'``); see the module docstring.

    ``image_shape`` is ``(height, width, channels)``; the decoder outputs ``channels *
    params_per_channel`` channels. ``hidden_widths`` is used by ``'mlp'``; ``conv_features`` and
    ``hidden`` by ``'conv'``; ``num_classes > 0`` makes it conditional; ``output_bias=False`` drops
    the decoder's per-pixel ``output_bias``. Raises ``ConfigError`` on an
    unknown architecture, activation or initialiser, or an image side the convolutions cannot halve
    ``len(conv_features)`` times.
    """
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3:
        raise ConfigError(f"image_shape must be (height, width, channels); got {image_shape}")
    if latent_dim <= 0:
        raise ConfigError(f"latent_dim must be positive; got {latent_dim}")
    if num_classes < 0:
        raise ConfigError(f"num_classes must be >= 0; got {num_classes}")
    try:
        layers.activation(activation)
        init = layers.initializer(kernel_init)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    output_shape = (*image_shape[:2], image_shape[2] * int(params_per_channel))
    if encoder == "mlp":
        widths = tuple(int(w) for w in hidden_widths)
        return VAE(
            encoder=MLPEncoder(latent_dim, widths, activation, init),
            decoder=MLPDecoder(output_shape, widths, activation, init, output_bias),
            num_classes=num_classes,
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
            decoder=ConvDecoder(output_shape, features, hidden, activation, init, output_bias),
            num_classes=num_classes,
        )
    raise ConfigError(f"unknown encoder {encoder!r}; expected 'mlp' or 'conv'")
