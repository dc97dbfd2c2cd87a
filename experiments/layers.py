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


# The stride-2 4x4 convolutions below compute exactly what ``lax.conv_transpose`` / ``lax.conv`` of
# that geometry compute, arranged so that XLA:CPU runs every part on its fast paths. Plain autodiff
# of those two gives kernel gradients that are window-dilated convolutions, which XLA:CPU runs on a
# slow generic path (with Flax's ConvTranspose and Conv they took about 80% of a DCGAN step, and
# much more when other jobs share the cores). Here:
# - UpConv (``upconv``): four stride-1 2x2 sub-pixel convolutions; plain autodiff of those gives
#   stride-1 convolutions for both gradients.
# - DownConv (``downconv``): XLA's strided convolution forward and kernel gradient; a custom VJP
#   computes the input gradient as the transposed convolution (``upconv`` with the flipped kernel),
#   so that second-order gradients (gradient penalties) never meet the slow window-dilated form.
# Both keep the parameters of Flax's layers (names, shapes, initial values), so checkpoints are
# unchanged; tests/test_layers.py checks outputs and gradients against Flax within 1e-5.

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _flip_transpose(kernel: jax.Array) -> jax.Array:
    """The kernel of the transposed operation: spatially flipped, in/out channels swapped."""
    return jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))


def _down_forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DIMENSIONS
    )


def upconv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)))`` (NHWC, HWIO, kernel not flipped):
    the layer of ``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))``
    and of PyTorch's ``ConvTranspose2d(4, stride=2, padding=1)``, output exactly twice the input.

    The transposed convolution correlates ``kernel`` with ``x`` dilated by zeros, so output pixel
    ``(2m + py, 2n + px)`` only meets the taps ``kernel[py::2, px::2]``: in each dimension, phase 0
    sums ``x[m - 1] k[0] + x[m] k[2]`` and phase 1 sums ``x[m] k[1] + x[m + 1] k[3]``. Each phase is
    a stride-1 2x2 convolution of the undilated input (padded by one pixel on the side it reaches
    past); the four results interleave into the doubled image. The same products, without the
    dilated form's multiplications by zero, and plain autodiff gives gradients that are stride-1
    convolutions too (forward mode included).
    """
    batch, height, width, _ = x.shape
    features = kernel.shape[-1]
    rows = []
    for py in range(2):
        phases = [
            jax.lax.conv_general_dilated(
                x,
                kernel[py::2, px::2],
                window_strides=(1, 1),
                padding=((1 - py, py), (1 - px, px)),
                dimension_numbers=_DIMENSIONS,
            )
            for px in range(2)
        ]
        rows.append(jnp.stack(phases, axis=3))  # (batch, height, width, px, features)
    y = jnp.stack(rows, axis=2)  # (batch, height, py, width, px, features)
    return y.reshape(batch, 2 * height, 2 * width, features)


@jax.custom_vjp
def downconv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv(x, kernel, (2, 2), ((1, 1), (1, 1)))`` (NHWC, HWIO): the layer of
    ``nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))`` and of PyTorch's
    ``Conv2d(4, stride=2, padding=1)``, output ``floor(side / 2)``.

    The forward pass is XLA's own convolution. Gradients: the input's is the transposed convolution
    with the flipped kernel (``upconv``, trimmed or zero-extended to odd sides; XLA's own would be
    a window-dilated convolution, slow on CPU, also inside second-order gradients), the kernel's
    XLA's own.
    Forward-mode differentiation (``jax.jvp``) is not defined (a ``custom_vjp``).
    """
    return _down_forward(x, kernel)


def _downconv_fwd(x, kernel):
    return _down_forward(x, kernel), (x, kernel)


def _downconv_bwd(residuals, cotangent):
    x, kernel = residuals
    _, height, width, _ = x.shape
    _, out_height, out_width, _ = cotangent.shape
    # Input pixel i gets output o through tap i + 1 - 2o: the transposed convolution of the
    # cotangent, whose 2 * out rows are one short of the input's when its side is odd.
    extra = ((0, 0), (0, height - 2 * out_height), (0, width - 2 * out_width), (0, 0))
    grown = jnp.pad(cotangent, tuple((0, (e + 1) // 2) for _, e in extra))
    dx = upconv(grown, _flip_transpose(kernel))[:, :height, :width]
    # XLA's own kernel gradient of the strided convolution is fast on CPU (the slow one is that of
    # its input gradient, a window-dilated convolution, which the line above avoids).
    _, kernel_vjp = jax.vjp(lambda k: _down_forward(x, k), kernel)
    (dkernel,) = kernel_vjp(cotangent)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


downconv.defvjp(_downconv_fwd, _downconv_bwd)


class _Conv4x4(nn.Module):
    """Holds exactly the parameters of Flax's ``Conv`` / ``ConvTranspose`` with a 4x4 kernel:
    ``kernel`` ``(4, 4, in, features)`` and ``bias`` ``(features,)``, same initialisers, same
    init randomness (the parameter names and module path decide it), and applies ``op``."""

    features: int
    op: Callable[[jax.Array, jax.Array], jax.Array]
    use_bias: bool = True
    kernel_init: Callable = INITIALIZERS["default"]
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
        y = self.op(x, kernel)
        return y if bias is None else y + bias


class UpConv(nn.Module):
    """Doubles height and width: a 4x4 stride-2 transposed convolution with the geometry of PyTorch's
    ``ConvTranspose2d(kernel_size=4, stride=2, padding=1)`` (symmetric, output exactly 2x input).

    Computes ``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))`` with
    the same parameters (``ConvTranspose_0/{kernel, bias}``, same initial values: checkpoints are
    unchanged) through ``upconv``, whose forward pass and gradients are fast on XLA:CPU.
    """

    features: int
    use_bias: bool = True
    kernel_init: Callable = INITIALIZERS["default"]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _Conv4x4(
            self.features,
            upconv,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            name="ConvTranspose_0",
        )(x)


class DownConv(nn.Module):
    """Halves height and width: a 4x4 stride-2 convolution with padding 1 (PyTorch's DCGAN geometry).

    Computes ``nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))`` with the same
    parameters (``Conv_0/{kernel, bias}``, same initial values) through ``downconv``, whose
    gradients are fast on XLA:CPU.
    """

    features: int
    use_bias: bool = True
    kernel_init: Callable = INITIALIZERS["default"]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _Conv4x4(
            self.features,
            downconv,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            name="Conv_0",
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
