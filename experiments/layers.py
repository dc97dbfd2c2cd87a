"""Layers both families use (one home for them): resolution-doubling and -halving convolutions,
MLP stacks and named initialisers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INITIALIZERS: dict[str, Callable] = {
    "default": nn.initializers.lecun_normal(),
    "dcgan_normal": nn.initializers.normal(0.02),  # N(0, 0.02) as in Radford et al. (DCGAN)
    "xavier": nn.initializers.xavier_uniform(),
    "he": nn.initializers.he_normal(),
    "orthogonal": nn.initializers.orthogonal(),
}

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),
    "elu": nn.elu,
    "tanh": jnp.tanh,
    "softplus": nn.softplus,
    "swish": nn.swish,
}


def initializer(name: str) -> Callable:
    """A kernel initialiser by name (one of ``INITIALIZERS``)."""
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; expected one of {sorted(INITIALIZERS)}")
    return INITIALIZERS[name]


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """An activation function by name (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class UpConv(nn.Module):
    """Doubles height and width: a 4x4 stride-2 transposed convolution with the geometry of PyTorch's
    ``ConvTranspose2d(kernel_size=4, stride=2, padding=1)`` (symmetric, output exactly 2x input)."""

    features: int
    use_bias: bool = True
    kernel_init: Callable = INITIALIZERS["default"]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.ConvTranspose(
            self.features,
            (4, 4),
            strides=(2, 2),
            padding=((2, 2), (2, 2)),
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
        )(x)


class DownConv(nn.Module):
    """Halves height and width: a 4x4 stride-2 convolution with padding 1 (PyTorch's DCGAN geometry)."""

    features: int
    use_bias: bool = True
    kernel_init: Callable = INITIALIZERS["default"]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(
            self.features,
            (4, 4),
            strides=(2, 2),
            padding=((1, 1), (1, 1)),
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
        )(x)


class MLP(nn.Module):
    """Dense layers of ``widths`` with ``activation`` between them (none after the last)."""

    widths: Sequence[int]
    activation: str = "relu"
    kernel_init: Callable = INITIALIZERS["default"]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        for index, width in enumerate(self.widths):
            x = nn.Dense(width, kernel_init=self.kernel_init)(x)
            if index + 1 < len(self.widths):
                x = act(x)
        return x
