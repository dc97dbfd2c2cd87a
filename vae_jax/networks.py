"""VAE networks: a diagonal-Gaussian encoder q(z | x[, y]) and a decoder of the likelihood's
parameters p(x | z[, y]).

Every module is built from explicit keyword arguments (never from a whole config); ``build_vae``
is the one place that maps names (``'mlp'`` / ``'conv'``) to modules. Images are NHWC float32.

Precision (``dtype``, ``experiments.precision``): every network computes in ``dtype`` (float32 or
bfloat16) with float32 parameters. It casts its inputs (images, latents, the condition) to
``dtype`` on entry and returns float32: the encoder's mean and log-variance, the decoder's
likelihood parameters (the per-pixel output bias is added in float32), so reparameterisation,
log-likelihoods and KL terms are float32. The autoregressive head's causal context is an
activation (``dtype``).

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
* ``AutoregressiveHead`` (``autoregressive_kernel > 0``; a PixelVAE-style decoder, Gulrajani et al.
  2017): the decoder then outputs ``autoregressive_features`` feature maps instead of the
  likelihood's parameters, and the parameters of pixel ``i`` (raster order) are a per-pixel MLP
  (``autoregressive_layers`` hidden 1x1 layers) of those features and of a *causal* context: a
  masked ``k x k`` convolution of the image that sees only the pixels before ``i`` (the rows above
  within ``k // 2``, and the ``k // 2`` pixels to its left). So p(x | z) = prod_i p(x_i | x_<i, z):
  the likelihood of a given image is still one parallel pass (``context(x)`` once per image, shared
  by all its importance samples), while sampling is sequential over pixels
  (``vae_jax.family.VAEFamily.autoregressive_means``).
* ``VAE``: ``__call__(x, key, labels=None) -> (output, mean, logvar)`` with one reparameterised z
  per example (``vae_jax.objectives.reparameterize``); ``encode(x, labels)`` and ``decode(z, labels)`` for ``apply(..., method=...)``
  (with an autoregressive head, ``decode(z, labels, context)`` needs ``context(x)`` of the image
  whose likelihood it gives). With ``num_classes > 0`` it is a conditional VAE (Sohn et al.
  2015): the one-hot label is an input of both the encoder and the decoder.

The decoder's output has ``channels * params_per_channel`` channels (the likelihood's parameters,
see ``vae_jax.likelihoods``). ``output_bias`` (``(H, W, channels * params_per_channel)``, zeros at
``init``) is the per-pixel offset of the output; the family sets it from the data mean at init
(``output_bias_init='none'`` leaves it out, as in the plain Kingma & Welling network).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments import layers, rng
from experiments.errors import ConfigError
from experiments.layers import MLP, DownConv, UpConv
from vae_jax import objectives


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


def posterior_heads(h: jax.Array, latent_dim: int, kernel_init: Callable, dtype):
    """The ``mean`` and ``logvar`` Dense heads of the encoders, computed in ``dtype``, float32."""
    mean = nn.Dense(latent_dim, kernel_init=kernel_init, dtype=dtype, name="mean")(h)
    logvar = nn.Dense(latent_dim, kernel_init=kernel_init, dtype=dtype, name="logvar")(h)
    return mean.astype(jnp.float32), logvar.astype(jnp.float32)


class MLPEncoder(nn.Module):
    """q(z | x) = N(mean, diag(exp(logvar))) from flattened pixels through dense layers."""

    latent_dim: int
    hidden_widths: Sequence[int] = (500,)
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, condition: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        h = with_condition(x.reshape((x.shape[0], -1)).astype(self.dtype), condition)
        if self.hidden_widths:
            widths = tuple(self.hidden_widths)
            h = MLP(widths, self.activation, self.kernel_init, self.dtype, name="hidden")(h)
            h = layers.activation(self.activation)(h)
        return posterior_heads(h, self.latent_dim, self.kernel_init, self.dtype)


class MLPDecoder(nn.Module):
    """The likelihood's parameters ``(batch, *output_shape)`` of p(x | z) through dense layers."""

    output_shape: Sequence[int]
    hidden_widths: Sequence[int] = (500,)  # the encoder's widths; used in reverse order
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")
    output_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, condition: jax.Array | None = None) -> jax.Array:
        widths = (*reversed(tuple(self.hidden_widths)), math.prod(self.output_shape))
        h = MLP(widths, self.activation, self.kernel_init, self.dtype, name="layers")(
            with_condition(z.astype(self.dtype), condition)
        )
        h = h.reshape((z.shape[0], *self.output_shape)).astype(jnp.float32)
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
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, condition: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        act = layers.activation(self.activation)
        layer = dict(kernel_init=self.kernel_init, dtype=self.dtype)
        h = x.astype(self.dtype)
        for features in self.conv_features:
            h = act(DownConv(features, **layer)(h))
        h = with_condition(h.reshape((h.shape[0], -1)), condition)
        h = act(nn.Dense(self.hidden, **layer)(h))
        return posterior_heads(h, self.latent_dim, self.kernel_init, self.dtype)


class ConvDecoder(nn.Module):
    """The likelihood's parameters of p(x | z) through two dense layers and stride-2 transposed
    convolutions."""

    output_shape: Sequence[int]
    conv_features: Sequence[int] = (32, 64)
    hidden: int = 256
    activation: str = "relu"
    kernel_init: Callable = layers.initializer("default")
    output_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, condition: jax.Array | None = None) -> jax.Array:
        act = layers.activation(self.activation)
        layer = dict(kernel_init=self.kernel_init, dtype=self.dtype)
        height, width, channels = self.output_shape
        factor = 2 ** len(self.conv_features)
        small = (height // factor, width // factor, self.conv_features[-1])
        h = act(nn.Dense(self.hidden, **layer)(with_condition(z.astype(self.dtype), condition)))
        h = act(nn.Dense(math.prod(small), **layer)(h))
        h = h.reshape((z.shape[0], *small))
        for features in reversed(self.conv_features[:-1]):
            h = act(UpConv(features, **layer)(h))
        h = UpConv(channels, **layer)(h).astype(jnp.float32)
        if not self.output_bias:
            return h
        return OutputBias(tuple(self.output_shape), name="output_bias")(h)


def causal_mask(kernel_size: int) -> jax.Array:
    """The ``(kernel_size // 2 + 1, kernel_size)`` mask of a causal kernel's taps: the upper half
    of a ``kernel_size`` square whose last row is the current image row, where only the taps left
    of the centre are kept."""
    half = kernel_size // 2
    last_row = jnp.arange(kernel_size) < half
    rows = jnp.ones((half, kernel_size), bool)
    return jnp.concatenate([rows, last_row[None, :]], axis=0).astype(jnp.float32)


def masked_causal_kernel(kernel: jax.Array) -> jax.Array:
    """``kernel`` (the causal half ``(k // 2 + 1, k, in, out)``) with ``causal_mask``'s taps only."""
    return kernel * causal_mask(kernel.shape[1])[:, :, None, None]


def causal_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The masked ("type A") convolution of PixelCNN: output pixel ``(r, c)`` sums ``x`` over rows
    ``r - k // 2 .. r - 1`` (columns ``c ± k // 2``) and the pixels ``(r, c - k // 2 .. c - 1)``,
    never ``(r, c)`` itself or anything after it in raster order. ``kernel`` is the causal half
    ``(k // 2 + 1, k, in, out)`` of a ``k x k`` kernel (see ``causal_mask``), masked, then cast to
    ``x``'s dtype; NHWC, same size."""
    half = kernel.shape[1] // 2
    return jax.lax.conv_general_dilated(
        x,
        masked_causal_kernel(kernel).astype(x.dtype),
        (1, 1),
        ((half, 0), (half, half)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


class AutoregressiveHead(nn.Module):
    """p(x_i | x_<i, z) for every pixel ``i`` from the decoder's feature maps and a causal context.

    ``context(x)`` is ``causal_conv(x)`` + bias (``features`` channels); ``__call__(z_features,
    context)`` concatenates the two per pixel, applies ``hidden_layers`` 1x1 layers of ``features``
    units with ``activation``, then a 1x1 layer to the ``output_shape[-1]`` likelihood parameters
    and the per-pixel ``output_bias`` (like the plain decoders'). ``pixel(z_features, x, row,
    col)`` is the same for the one pixel ``(row, col)`` of every image, from its causal
    neighbourhood only: what ancestral sampling needs at each of its ``H * W`` steps.
    """

    output_shape: Sequence[int]  # (height, width, likelihood parameters per pixel)
    input_channels: int = 1
    features: int = 32
    kernel_size: int = 7
    hidden_layers: int = 2
    activation: str = "elu"
    kernel_init: Callable = layers.initializer("default")
    output_bias: bool = True
    dtype: Any = jnp.float32

    def setup(self):
        half = self.kernel_size // 2
        shape = (half + 1, self.kernel_size, self.input_channels, self.features)
        self.context_kernel = self.param("context_kernel", self.kernel_init, shape)
        self.context_bias = self.param("context_bias", nn.initializers.zeros, (self.features,))
        layer = dict(kernel_init=self.kernel_init, dtype=self.dtype)
        self.hidden = [
            nn.Dense(self.features, **layer, name=f"hidden_{i}") for i in range(self.hidden_layers)
        ]
        self.out = nn.Dense(self.output_shape[-1], **layer, name="out")
        if self.output_bias:
            self.bias = self.param("output_bias", nn.initializers.zeros, tuple(self.output_shape))

    def context(self, x: jax.Array) -> jax.Array:
        """The causal context ``(batch, H, W, features)`` of images ``x`` (in ``dtype``)."""
        bias = self.context_bias.astype(self.dtype)
        return causal_conv(x.astype(self.dtype), self.context_kernel) + bias

    def combine(self, z_features: jax.Array, context: jax.Array) -> jax.Array:
        """The likelihood's parameters (float32) from per-pixel ``z_features`` and ``context`` (any
        leading shape; the per-pixel output bias is not included)."""
        act = layers.activation(self.activation)
        h = jnp.concatenate([z_features.astype(self.dtype), context.astype(self.dtype)], axis=-1)
        for dense in self.hidden:
            h = act(dense(h))
        return self.out(h).astype(jnp.float32)

    def __call__(self, z_features: jax.Array, context: jax.Array) -> jax.Array:
        output = self.combine(z_features, context)
        return output + self.bias if self.output_bias else output

    def pixel(self, z_features: jax.Array, x: jax.Array, row, col) -> jax.Array:
        """The likelihood's parameters ``(batch, output_shape[-1])`` of pixel ``(row, col)`` (traced
        ints allowed) given ``z_features`` ``(batch, H, W, F)`` and images ``x``; equal to
        ``self(z_features, self.context(x))[:, row, col]``."""
        half = self.kernel_size // 2
        padded = jnp.pad(x.astype(self.dtype), ((0, 0), (half, 0), (half, half), (0, 0)))
        patch = jax.lax.dynamic_slice(
            padded,
            (0, row, col, 0),
            (x.shape[0], half + 1, self.kernel_size, x.shape[-1]),
        )
        masked = masked_causal_kernel(self.context_kernel).astype(self.dtype)
        context = jnp.einsum("nhwc,hwcf->nf", patch, masked) + self.context_bias.astype(self.dtype)
        features = jax.lax.dynamic_slice(
            z_features, (0, row, col, 0), (x.shape[0], 1, 1, z_features.shape[-1])
        )[:, 0, 0]
        output = self.combine(features, context)
        if self.output_bias:
            output = (
                output
                + jax.lax.dynamic_slice(self.bias, (row, col, 0), (1, 1, self.output_shape[-1]))[0]
            )
        return output


class VAE(nn.Module):
    """An encoder and a decoder joined by the reparameterisation trick; conditional on a class label
    (one-hot, input of both networks) when ``num_classes > 0``; autoregressive over pixels when
    ``autoregressive`` (an ``AutoregressiveHead``) is set."""

    encoder: nn.Module
    decoder: nn.Module
    num_classes: int = 0
    autoregressive: nn.Module | None = None

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
        """``(output, mean, logvar)``: decoder output at one posterior draw per example
        (``objectives.reparameterize`` with noise ``rng.normal_per_example(key, ...)``: row ``i``
        from example ``i``'s own key, so it does not depend on the batch size or on how many
        devices share the batch) and the posterior parameters."""
        mean, logvar = self.encode(x, labels)
        eps = rng.normal_per_example(key, mean.shape, mean.dtype)
        z = objectives.reparameterize(mean, logvar, eps)
        return self.decode(z, labels, self.context(x)), mean, logvar

    def encode(self, x: jax.Array, labels: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """The posterior ``(mean, logvar)``, each ``(batch, latent_dim)``."""
        return self.encoder(x, self.condition(labels))

    def context(self, x: jax.Array) -> jax.Array | None:
        """The autoregressive head's causal context of images ``x`` (None without a head)."""
        return None if self.autoregressive is None else self.autoregressive.context(x)

    def decode(
        self, z: jax.Array, labels: jax.Array | None = None, context: jax.Array | None = None
    ) -> jax.Array:
        """The likelihood's parameters ``(batch, H, W, C * params_per_channel)`` for latents ``z``
        ``(batch, latent_dim)``; with an autoregressive head, of the images whose ``context`` is
        given (``p(x_i | x_<i, z)`` for every pixel ``i``)."""
        output = self.decoder_features(z, labels)
        if self.autoregressive is None:
            return output
        if context is None:
            raise ValueError("an autoregressive decoder needs the context of the images it scores")
        return self.autoregressive(output, context)

    def decoder_features(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """The decoder's own output at ``z`` (the autoregressive head's z-features)."""
        return self.decoder(z, self.condition(labels))

    def pixel(self, z_features: jax.Array, x: jax.Array, row, col) -> jax.Array:
        """``AutoregressiveHead.pixel``: the likelihood's parameters of pixel ``(row, col)``."""
        return self.autoregressive.pixel(z_features, x, row, col)


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
    autoregressive_kernel: int = 0,
    autoregressive_features: int = 32,
    autoregressive_layers: int = 2,
    dtype: Any = jnp.float32,
) -> VAE:
    """A ``VAE`` of the named architecture (``'mlp'`` or ``'conv'``); see the module docstring.

    ``image_shape`` is ``(height, width, channels)``; the decoder outputs ``channels *
    params_per_channel`` channels. ``hidden_widths`` is used by ``'mlp'``; ``conv_features`` and
    ``hidden`` by ``'conv'``; ``num_classes > 0`` makes it conditional; ``output_bias=False`` drops
    the decoder's per-pixel ``output_bias``. ``autoregressive_kernel > 0`` (odd) adds an
    ``AutoregressiveHead`` with that causal kernel, ``autoregressive_features`` channels and
    ``autoregressive_layers`` hidden 1x1 layers; the decoder then outputs
    ``autoregressive_features`` channels and the head holds the output bias. ``dtype`` is the
    networks' compute dtype (see the module docstring). Raises
    ``ConfigError`` on an unknown architecture, activation or initialiser, a bad autoregressive
    head, or an image side the convolutions cannot halve ``len(conv_features)`` times.
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
    head = None
    if autoregressive_kernel:
        if autoregressive_kernel < 3 or autoregressive_kernel % 2 == 0:
            raise ConfigError(
                f"autoregressive_kernel must be an odd size >= 3 (or 0: off); got "
                f"{autoregressive_kernel}"
            )
        if autoregressive_features < 1 or autoregressive_layers < 0:
            raise ConfigError(
                "autoregressive_features must be >= 1 and autoregressive_layers >= 0; got "
                f"{autoregressive_features}, {autoregressive_layers}"
            )
        head = AutoregressiveHead(
            output_shape,
            input_channels=image_shape[2],
            features=autoregressive_features,
            kernel_size=autoregressive_kernel,
            hidden_layers=autoregressive_layers,
            activation=activation,
            kernel_init=init,
            output_bias=output_bias,
            dtype=dtype,
        )
        # The decoder outputs the head's z-features; the head holds the output bias.
        output_shape, output_bias = (*image_shape[:2], autoregressive_features), False
    if encoder == "mlp":
        widths = tuple(int(w) for w in hidden_widths)
        return VAE(
            encoder=MLPEncoder(latent_dim, widths, activation, init, dtype=dtype),
            decoder=MLPDecoder(output_shape, widths, activation, init, output_bias, dtype=dtype),
            num_classes=num_classes,
            autoregressive=head,
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
            encoder=ConvEncoder(latent_dim, features, hidden, activation, init, dtype=dtype),
            decoder=ConvDecoder(
                output_shape, features, hidden, activation, init, output_bias, dtype=dtype
            ),
            num_classes=num_classes,
            autoregressive=head,
        )
    raise ConfigError(f"unknown encoder {encoder!r}; expected 'mlp' or 'conv'")
