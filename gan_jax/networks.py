"""Generators and discriminators, built from explicit keyword arguments.

Architectures (``architecture``; ``model.architecture`` of a config):

- ``mlp``: for 2-D toys. G: z → MLP(features) → Dense(data_dim) (linear output, raw coordinates);
  D: x → MLP(features) → activation → head.
- ``dcgan``: Radford et al. (2016) for 28, 32 or 64 px. G: z → Dense → BN → ReLU → [UpConv → BN →
  ReLU]* → UpConv → tanh, ``features`` the channels before each doubling (so the first map is
  ``image_size / 2**len(features)`` wide: 7 for 28 px with two, 4 for 32 px with three and 64 px
  with four). D: [DownConv → (BN) → LeakyReLU(0.2)]* → flatten → head, with no normalisation, batch
  norm (not on the first layer) or spectral normalisation of every layer.
- ``resnet``: the SN-ResNet of SNGAN's CIFAR-10 experiments (Miyato et al. 2018; Gulrajani et al.
  2017's blocks). G: z → Dense(4·4·f) → [ResBlock up]* → BN → ReLU → conv3x3 → tanh; D: an
  optimised first block and residual blocks (those but the last two halve the side) → ReLU → sum
  over space → head. With the defaults (G (256, 256, 256), D (128, 128, 128, 128)) these are the
  paper's 32 px shapes.

Heads and conditioning (``num_classes > 0``): the generator takes the label through a learned
embedding concatenated to z (``'embedding'``) or through conditional batch norm (``'cbn'``: every BN
gets a per-class scale and shift; de Vries et al. 2017, Miyato & Koyama 2018). The discriminator
head is Dense(1) on the features h, plus ⟨embed(y), h⟩ for the projection discriminator
(``'projection'``, Miyato & Koyama 2018), or together with Dense(num_classes) class logits for ACGAN
(``'auxiliary'``). Discriminators return ``(logits (batch,), class_logits (batch, C) or None)``.

Precision (``dtype``, ``experiments.precision``): every network computes in ``dtype`` (float32 or
bfloat16) with float32 parameters; it casts its inputs to ``dtype`` on entry and its outputs to
float32 on exit (generated examples, logits and class logits), so the losses and metrics computed
from them are float32. Batch norm's statistics are float32 whatever ``dtype`` is.

Images are NHWC in [-1, 1] inside the GAN family (image generators end in tanh). Batch norm uses
PyTorch's defaults (momentum 0.1 of the new value, eps 1e-5) and runs in train mode (batch
statistics, running averages updated) when ``train`` is True. Spectral normalisation's power
iteration runs only when ``update_stats`` is True (see ``gan_jax.spectral``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments.layers import MLP, DownConv, UpConv, activation, initializer
from gan_jax.spectral import SpectralNorm

# PyTorch's BatchNorm defaults (momentum 0.1 of the new value, eps 1e-5).
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5
G_CONDITIONINGS = ("none", "embedding", "cbn")
D_CONDITIONINGS = ("none", "projection", "auxiliary")
D_NORMS = {"mlp": ("none", "spectral"), "dcgan": ("none", "batch", "spectral")}
D_NORMS["resnet"] = D_NORMS["mlp"]


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {list(choices)}")


def sn_wrap(layer: nn.Module, spectral: bool, iterations: int) -> Callable:
    """``f(*args, update)``: ``layer(*args)``, spectrally normalised when ``spectral``."""
    if not spectral:
        return lambda *args, update: layer(*args)
    wrapped = SpectralNorm(layer, num_iterations=iterations)
    return lambda *args, update: wrapped(*args, update_stats=update)


class ConditionalBatchNorm(nn.Module):
    """Batch norm without its own affine part, then a per-class scale (init 1) and shift (init 0)."""

    num_classes: int
    train: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array) -> jax.Array:
        x = nn.BatchNorm(
            use_running_average=not self.train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            use_scale=False,
            use_bias=False,
            dtype=self.dtype,
        )(x)
        features = x.shape[-1]
        ones, zeros = nn.initializers.ones, nn.initializers.zeros
        scale = nn.Embed(self.num_classes, features, embedding_init=ones, dtype=self.dtype)(labels)
        shift = nn.Embed(self.num_classes, features, embedding_init=zeros, dtype=self.dtype)(labels)
        shape = (x.shape[0], *([1] * (x.ndim - 2)), features)
        return x * scale.reshape(shape) + shift.reshape(shape)


class GeneratorNorm(nn.Module):
    """The generator's normalisation: batch norm, conditional batch norm or nothing."""

    norm: str = "batch"  # batch | none
    conditioning: str = "none"
    num_classes: int = 0
    train: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None) -> jax.Array:
        if self.norm == "none":
            return x
        if self.conditioning == "cbn":
            return ConditionalBatchNorm(self.num_classes, self.train, self.dtype)(x, labels)
        return batch_norm(self.train, self.dtype)(x)


def batch_norm(train: bool, dtype) -> nn.BatchNorm:
    """PyTorch's BatchNorm (momentum 0.1, eps 1e-5): statistics and normalisation in float32,
    output in ``dtype``."""
    return nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype
    )


def embed_label(z: jax.Array, labels, conditioning: str, num_classes: int, width: int) -> jax.Array:
    """``z`` with a learned ``width``-d label embedding appended (conditioning 'embedding')."""
    if conditioning != "embedding":
        return z
    return jnp.concatenate([z, nn.Embed(num_classes, width)(labels).astype(z.dtype)], axis=-1)


def discriminator_head(
    h: jax.Array,
    labels,
    *,
    conditioning: str,
    num_classes: int,
    spectral: bool,
    iterations: int,
    update: bool,
    kernel_init: Callable,
    dtype: Any = jnp.float32,
) -> tuple[jax.Array, jax.Array | None]:
    """Dense(1) logits of features ``h`` (batch, d), with projection or auxiliary class logits;
    computed in ``dtype``, returned as float32."""
    dense = nn.Dense(1, kernel_init=kernel_init, dtype=dtype)
    logits = sn_wrap(dense, spectral, iterations)(h, update=update)
    logits = logits[:, 0].astype(jnp.float32)
    class_logits = None
    if conditioning == "projection":
        embed = sn_wrap(nn.Embed(num_classes, h.shape[-1], dtype=dtype), spectral, iterations)
        projection = embed(labels, update=update) * h
        logits = logits + jnp.sum(projection, axis=-1, dtype=jnp.float32)
    elif conditioning == "auxiliary":
        dense = nn.Dense(num_classes, kernel_init=kernel_init, dtype=dtype)
        class_logits = sn_wrap(dense, spectral, iterations)(h, update=update).astype(jnp.float32)
    return logits, class_logits


# -- MLP (2-D toys) --------------------------------------------------------------------------------


class MLPGenerator(nn.Module):
    """z → [Dense → (BN) → activation]* → Dense(data_dim), a linear output.

    With ``norm='batch'`` (as PacGAN's toy generator) a rigid translation of the whole output can
    only come from the last layer's bias, which slows the mode hopping of the plain MLP.
    """

    data_dim: int = 2
    features: Sequence[int] = (128, 128, 128)
    activation: str = "relu"
    weight_init: str = "default"
    norm: str = "none"  # none | batch
    num_classes: int = 0
    conditioning: str = "none"  # none | embedding
    embedding_dim: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, labels=None, train: bool = True) -> jax.Array:
        check_choice("MLP generator norm", self.norm, ("none", "batch"))
        check_choice("MLP generator conditioning", self.conditioning, ("none", "embedding"))
        kernel_init, act = initializer(self.weight_init), activation(self.activation)
        z = z.astype(self.dtype)
        x = embed_label(z, labels, self.conditioning, self.num_classes, self.embedding_dim)
        if self.norm == "none":
            widths = (*self.features, self.data_dim)
            mlp = MLP(widths, self.activation, kernel_init=kernel_init, dtype=self.dtype)
            return mlp(x).astype(jnp.float32)
        for width in self.features:
            x = nn.Dense(width, use_bias=False, kernel_init=kernel_init, dtype=self.dtype)(x)
            x = act(GeneratorNorm("batch", train=train, dtype=self.dtype)(x, None))
        x = nn.Dense(self.data_dim, kernel_init=kernel_init, dtype=self.dtype)(x)
        return x.astype(jnp.float32)


class MLPDiscriminator(nn.Module):
    features: Sequence[int] = (128, 128, 128)
    activation: str = "relu"
    weight_init: str = "default"
    norm: str = "none"  # none | spectral
    sn_iterations: int = 1
    num_classes: int = 0
    conditioning: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, labels=None, train: bool = True, update_stats: bool = False):
        del train
        check_choice("MLP discriminator norm", self.norm, D_NORMS["mlp"])
        spectral, kernel_init = self.norm == "spectral", initializer(self.weight_init)
        mlp = MLP(tuple(self.features), self.activation, kernel_init=kernel_init, dtype=self.dtype)
        h = activation(self.activation)(
            sn_wrap(mlp, spectral, self.sn_iterations)(x.astype(self.dtype), update=update_stats)
        )
        return discriminator_head(
            h,
            labels,
            conditioning=self.conditioning,
            num_classes=self.num_classes,
            spectral=spectral,
            iterations=self.sn_iterations,
            update=update_stats,
            kernel_init=kernel_init,
            dtype=self.dtype,
        )


# -- DCGAN -----------------------------------------------------------------------------------------


def first_map_size(image_size: int, num_doublings: int) -> int:
    base = image_size // 2**num_doublings
    if base < 1 or base * 2**num_doublings != image_size:
        raise ValueError(f"image_size {image_size} is not a multiple of 2**{num_doublings}")
    return base


class DCGANGenerator(nn.Module):
    """z → Dense (no bias) → BN → ReLU → [UpConv (no bias) → BN → ReLU]* → UpConv → tanh.

    No layer right before a BatchNorm has a bias: its gradient would be zero and Adam would amplify
    rounding noise. The first BN normalises the dense output per unit (as the PyTorch reference
    model this project benchmarks against).
    """

    image_size: int = 28
    channels: int = 1
    features: Sequence[int] = (128, 64)
    weight_init: str = "dcgan_normal"
    norm: str = "batch"  # batch | none
    num_classes: int = 0
    conditioning: str = "none"  # none | embedding | cbn
    embedding_dim: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, labels=None, train: bool = True) -> jax.Array:
        check_choice("DCGAN generator norm", self.norm, ("batch", "none"))
        check_choice("generator conditioning", self.conditioning, G_CONDITIONINGS)
        kernel_init = initializer(self.weight_init)
        base = first_map_size(self.image_size, len(self.features))
        use_bias = self.norm == "none"
        layer = dict(kernel_init=kernel_init, dtype=self.dtype)

        def norm(x):
            module = GeneratorNorm(
                self.norm, self.conditioning, self.num_classes, train, self.dtype
            )
            return module(x, labels)

        z = z.astype(self.dtype)
        x = embed_label(z, labels, self.conditioning, self.num_classes, self.embedding_dim)
        x = nn.Dense(base * base * self.features[0], use_bias=use_bias, **layer)(x)
        x = nn.relu(norm(x)).reshape(z.shape[0], base, base, self.features[0])
        for width in self.features[1:]:
            x = nn.relu(norm(UpConv(width, use_bias=use_bias, **layer)(x)))
        return jnp.tanh(UpConv(self.channels, **layer)(x)).astype(jnp.float32)


class DCGANDiscriminator(nn.Module):
    """[DownConv → (BN) → LeakyReLU(0.2)]* → flatten → head."""

    features: Sequence[int] = (64, 128)
    norm: str = "none"  # none | batch | spectral
    weight_init: str = "dcgan_normal"
    sn_iterations: int = 1
    num_classes: int = 0
    conditioning: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, labels=None, train: bool = True, update_stats: bool = False):
        check_choice("DCGAN discriminator norm", self.norm, D_NORMS["dcgan"])
        check_choice("discriminator conditioning", self.conditioning, D_CONDITIONINGS)
        kernel_init = initializer(self.weight_init)
        spectral = self.norm == "spectral"
        x = x.astype(self.dtype)
        for index, width in enumerate(self.features):
            normalized = self.norm == "batch" and index > 0
            conv = DownConv(
                width, use_bias=not normalized, kernel_init=kernel_init, dtype=self.dtype
            )
            x = sn_wrap(conv, spectral, self.sn_iterations)(x, update=update_stats)
            if normalized:
                x = batch_norm(train, self.dtype)(x)
            x = nn.leaky_relu(x, 0.2)
        return discriminator_head(
            x.reshape(x.shape[0], -1),
            labels,
            conditioning=self.conditioning,
            num_classes=self.num_classes,
            spectral=spectral,
            iterations=self.sn_iterations,
            update=update_stats,
            kernel_init=kernel_init,
            dtype=self.dtype,
        )


# -- SN-ResNet (SNGAN, 32 px) ----------------------------------------------------------------------


def conv(features: int, size: int, kernel_init: Callable, dtype: Any = jnp.float32) -> nn.Conv:
    pad = (size - 1) // 2
    return nn.Conv(
        features,
        (size, size),
        padding=((pad, pad), (pad, pad)),
        kernel_init=kernel_init,
        dtype=dtype,
    )


def upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour doubling of height and width."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample(x: jax.Array) -> jax.Array:
    """2x2 average pooling."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class GeneratorBlock(nn.Module):
    """BN → ReLU → up → conv3x3 → BN → ReLU → conv3x3, plus up → conv1x1 of the input."""

    features: int
    weight_init: str = "xavier"
    conditioning: str = "none"
    num_classes: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, labels, train: bool):
        kernel_init = initializer(self.weight_init)

        def norm(h):
            module = GeneratorNorm("batch", self.conditioning, self.num_classes, train, self.dtype)
            return module(h, labels)

        h = conv(self.features, 3, kernel_init, self.dtype)(upsample(nn.relu(norm(x))))
        h = conv(self.features, 3, kernel_init, self.dtype)(nn.relu(norm(h)))
        return h + conv(self.features, 1, kernel_init, self.dtype)(upsample(x))


class ResNetGenerator(nn.Module):
    image_size: int = 32
    channels: int = 3
    features: Sequence[int] = (256, 256, 256)
    weight_init: str = "xavier"
    norm: str = "batch"
    num_classes: int = 0
    conditioning: str = "none"
    embedding_dim: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, labels=None, train: bool = True) -> jax.Array:
        check_choice("ResNet generator norm", self.norm, ("batch",))
        check_choice("generator conditioning", self.conditioning, G_CONDITIONINGS)
        kernel_init = initializer(self.weight_init)
        base = first_map_size(self.image_size, len(self.features))
        z = z.astype(self.dtype)
        x = embed_label(z, labels, self.conditioning, self.num_classes, self.embedding_dim)
        x = nn.Dense(base * base * self.features[0], kernel_init=kernel_init, dtype=self.dtype)(x)
        x = x.reshape(z.shape[0], base, base, self.features[0])
        for width in self.features:
            block_conditioning = "cbn" if self.conditioning == "cbn" else "none"
            block = GeneratorBlock(
                width, self.weight_init, block_conditioning, self.num_classes, self.dtype
            )
            x = block(x, labels, train)
        x = nn.relu(GeneratorNorm("batch", "none", 0, train, self.dtype)(x, None))
        return jnp.tanh(conv(self.channels, 3, kernel_init, self.dtype)(x)).astype(jnp.float32)


class DiscriminatorBlock(nn.Module):
    """``first``: conv3x3 → ReLU → conv3x3 → pool, plus pool → conv1x1 (SNGAN's optimised block).
    Otherwise: ReLU → conv3x3 → ReLU → conv3x3 → (pool), plus conv1x1 → (pool) when the shape
    changes (else the identity)."""

    features: int
    down: bool = True
    first: bool = False
    weight_init: str = "xavier"
    spectral: bool = True
    sn_iterations: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, update: bool):
        kernel_init = initializer(self.weight_init)

        def sn_conv(h, size):
            layer = conv(self.features, size, kernel_init, self.dtype)
            return sn_wrap(layer, self.spectral, self.sn_iterations)(h, update=update)

        pool = downsample if self.down else (lambda h: h)
        if self.first:
            h = pool(sn_conv(nn.relu(sn_conv(x, 3)), 3))
            return h + sn_conv(downsample(x), 1)
        h = pool(sn_conv(nn.relu(sn_conv(nn.relu(x), 3)), 3))
        shortcut = x
        if self.down or x.shape[-1] != self.features:
            shortcut = pool(sn_conv(x, 1))
        return h + shortcut


class ResNetDiscriminator(nn.Module):
    features: Sequence[int] = (128, 128, 128, 128)
    norm: str = "spectral"  # spectral | none
    weight_init: str = "xavier"
    sn_iterations: int = 1
    num_classes: int = 0
    conditioning: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, labels=None, train: bool = True, update_stats: bool = False):
        del train
        check_choice("ResNet discriminator norm", self.norm, D_NORMS["resnet"])
        check_choice("discriminator conditioning", self.conditioning, D_CONDITIONINGS)
        spectral = self.norm == "spectral"
        num_down = max(len(self.features) - 2, 1)
        x = x.astype(self.dtype)
        for index, width in enumerate(self.features):
            block = DiscriminatorBlock(
                width,
                down=index < num_down,
                first=index == 0,
                weight_init=self.weight_init,
                spectral=spectral,
                sn_iterations=self.sn_iterations,
                dtype=self.dtype,
            )
            x = block(x, update_stats)
        h = jnp.sum(nn.relu(x), axis=(1, 2))
        return discriminator_head(
            h,
            labels,
            conditioning=self.conditioning,
            num_classes=self.num_classes,
            spectral=spectral,
            iterations=self.sn_iterations,
            update=update_stats,
            kernel_init=initializer(self.weight_init),
            dtype=self.dtype,
        )


# -- building from explicit arguments --------------------------------------------------------------

ARCHITECTURES = ("mlp", "dcgan", "resnet")
G_NORMS = {"mlp": ("none", "batch"), "dcgan": ("batch", "none"), "resnet": ("batch",)}


def build_generator(
    architecture: str,
    *,
    features: Sequence[int],
    weight_init: str,
    norm: str,
    image_size: int = 28,
    channels: int = 1,
    data_dim: int = 2,
    activation: str = "relu",
    num_classes: int = 0,
    conditioning: str = "none",
    embedding_dim: int = 32,
    dtype: Any = jnp.float32,
) -> nn.Module:
    """The generator of ``architecture``: ``image_size`` and ``channels`` are read by the image
    architectures, ``data_dim`` and ``activation`` by ``mlp``; ``dtype`` is the compute dtype.

    Raises:
        ValueError: an unknown architecture.
    """
    common = dict(
        features=tuple(features),
        weight_init=weight_init,
        norm=norm,
        num_classes=num_classes,
        conditioning=conditioning,
        embedding_dim=embedding_dim,
        dtype=dtype,
    )
    if architecture == "mlp":
        return MLPGenerator(data_dim=data_dim, activation=activation, **common)
    image = dict(image_size=image_size, channels=channels)
    if architecture == "dcgan":
        return DCGANGenerator(**image, **common)
    if architecture == "resnet":
        return ResNetGenerator(**image, **common)
    raise ValueError(
        f"unknown architecture {architecture!r}; expected one of {list(ARCHITECTURES)}"
    )


def build_discriminator(
    architecture: str,
    *,
    features: Sequence[int],
    weight_init: str,
    norm: str,
    activation: str = "relu",
    sn_iterations: int = 1,
    num_classes: int = 0,
    conditioning: str = "none",
    dtype: Any = jnp.float32,
) -> nn.Module:
    """The discriminator of ``architecture`` (``activation``: ``mlp`` only); ``dtype`` is the
    compute dtype.

    Raises:
        ValueError: an unknown architecture.
    """
    common = dict(
        features=tuple(features),
        weight_init=weight_init,
        norm=norm,
        sn_iterations=sn_iterations,
        num_classes=num_classes,
        conditioning=conditioning,
        dtype=dtype,
    )
    if architecture == "mlp":
        return MLPDiscriminator(activation=activation, **common)
    if architecture == "dcgan":
        return DCGANDiscriminator(**common)
    if architecture == "resnet":
        return ResNetDiscriminator(**common)
    raise ValueError(
        f"unknown architecture {architecture!r}; expected one of {list(ARCHITECTURES)}"
    )


def build_networks(
    architecture: str,
    *,
    generator: Mapping[str, Any],
    discriminator: Mapping[str, Any],
    image_size: int = 28,
    channels: int = 1,
    data_dim: int = 2,
    num_classes: int = 0,
    dtype: Any = jnp.float32,
) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` of ``architecture``: ``generator`` and ``discriminator`` hold
    the other keyword arguments of ``build_generator`` and ``build_discriminator`` (``features``,
    ``weight_init``, ``norm``, ...); the data shape, ``num_classes`` and the compute ``dtype`` are
    shared.

    Raises:
        ValueError: an unknown architecture.
    """
    g = build_generator(
        architecture,
        image_size=image_size,
        channels=channels,
        data_dim=data_dim,
        num_classes=num_classes,
        dtype=dtype,
        **generator,
    )
    d = build_discriminator(architecture, num_classes=num_classes, dtype=dtype, **discriminator)
    return g, d
