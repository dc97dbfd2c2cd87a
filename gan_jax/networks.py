"""Generator and discriminator networks, built from explicit keyword arguments.

Images are NHWC in [-1, 1] inside the GAN family (the generator ends in tanh).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments.layers import DownConv, UpConv, initializer

# PyTorch's BatchNorm defaults (momentum 0.1 of the new value, eps 1e-5).
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5


class DCGANGenerator(nn.Module):
    """z → Dense (no bias) → BN → ReLU → [UpConv (no bias) → BN → ReLU]* → UpConv → tanh.

    ``features`` lists the channels before each doubling, so the first feature map is
    ``image_size / 2**len(features)`` pixels wide (7 for 28 px with two doublings). No layer right
    before a BatchNorm has a bias: its gradient would be zero and Adam would amplify rounding noise.
    """

    image_size: int = 28
    channels: int = 1
    features: Sequence[int] = (128, 64)
    weight_init: str = "dcgan_normal"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        kernel_init = initializer(self.weight_init)
        base = self.image_size // 2 ** len(self.features)
        if base * 2 ** len(self.features) != self.image_size:
            raise ValueError(
                f"image_size {self.image_size} is not {base} * 2**{len(self.features)}"
            )
        norm = lambda: nn.BatchNorm(
            use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON
        )
        x = nn.Dense(base * base * self.features[0], use_bias=False, kernel_init=kernel_init)(z)
        x = nn.relu(norm()(x)).reshape(z.shape[0], base, base, self.features[0])
        for width in self.features[1:]:
            x = nn.relu(norm()(UpConv(width, use_bias=False, kernel_init=kernel_init)(x)))
        return jnp.tanh(UpConv(self.channels, kernel_init=kernel_init)(x))


class DCGANDiscriminator(nn.Module):
    """[DownConv → (BN) → LeakyReLU(0.2)]* → Dense(1); returns one logit per example."""

    features: Sequence[int] = (64, 128)
    norm: str = "none"  # none | batch
    weight_init: str = "dcgan_normal"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        kernel_init = initializer(self.weight_init)
        if self.norm not in ("none", "batch"):
            raise ValueError(f"unknown discriminator norm {self.norm!r}; expected none or batch")
        for index, width in enumerate(self.features):
            use_norm = self.norm == "batch" and index > 0
            x = DownConv(width, use_bias=not use_norm, kernel_init=kernel_init)(x)
            if use_norm:
                x = nn.BatchNorm(
                    use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON
                )(x)
            x = nn.leaky_relu(x, 0.2)
        return nn.Dense(1, kernel_init=kernel_init)(x.reshape(x.shape[0], -1))[:, 0]
