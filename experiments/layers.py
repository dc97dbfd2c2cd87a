"""Layers both families use (one home for them): resolution-doubling and -halving convolutions,
MLP stacks and named initialisers.

Each layer's ``dtype`` is the dtype it computes in (``experiments.precision``): its parameters stay
float32 and are cast to ``dtype`` with its input for the computation (float32: exactly Flax's
layers' computation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

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
# of those two gives window-dilated and input-dilated convolutions, which XLA:CPU runs on slow
# generic paths (with Flax's ConvTranspose and Conv they took about 80% of a DCGAN step). Here only
# three kinds of operation remain, in any order of differentiation:
# - XLA's strided convolution (``_down_forward``), fast;
# - XLA's kernel gradient of that convolution (a window-dilated convolution), fast;
# - the transposed convolution as one matrix product and a col2im overlap-add (``_transposed``),
#   the form PyTorch uses (for dcgan28's first UpConv, forward pass 9.8 -> 6.2 ms on 2 threads
#   against four stride-1 sub-pixel convolutions).
# UpConv and DownConv's input gradient are that transposed convolution, whose gradients are the
# strided convolution and its kernel gradient. Both keep the parameters
# of Flax's layers (names, shapes, initial values), so checkpoints are unchanged;
# tests/test_layers.py checks outputs, gradients and second-order gradients against Flax (1e-5).

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _flip_transpose(kernel: jax.Array) -> jax.Array:
    """The kernel of the transposed operation: spatially flipped, in/out channels swapped."""
    return jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))


def _down_forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DIMENSIONS
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _transposed(y: jax.Array, down_kernel: jax.Array, height: int, width: int) -> jax.Array:
    """The adjoint of ``x -> _down_forward(x, down_kernel)`` for ``x`` of ``height`` x ``width``
    (``y`` ``(batch, rows, cols, out)``, ``down_kernel`` ``(4, 4, in, out)``): col2im, as PyTorch.

    Patch ``(o, p)`` of the padded input covers pixels ``2o + ky``, ``2p + kx``; with the tap split
    as ``ky = 2 ay + sy``, pixel ``2q + sy`` of the padded frame gets tap ``(ay, sy)`` of patch
    ``q - ay``. So one matrix product ``(pixels, out) x (out, 16 in)``, its columns ordered
    ``(ay, ax, sy, sx, in)``, gives every patch; four shifted ``(sy, sx, in)`` blocks add up to
    the padded image in space-to-depth form, and depth-to-space and the crop finish it (no scatter,
    no multiplication by zeros). Gradients (a custom VJP): ``y``'s is the strided convolution of
    the cotangent (``downconv``), the kernel's XLA's kernel gradient of that convolution.
    """
    batch, rows, cols, features = y.shape
    channels = down_kernel.shape[2]
    kernel = down_kernel.reshape(2, 2, 2, 2, channels, features).transpose(0, 2, 1, 3, 4, 5)
    columns = jax.lax.dot_general(
        y.reshape(batch * rows * cols, features),
        kernel.reshape(16 * channels, features),
        (((1,), (1,)), ((), ())),
    ).reshape(batch, rows, cols, 2, 2, 4 * channels)
    blocks = 0
    for ay in range(2):
        for ax in range(2):
            shift = ((0, 0), (ay, 1 - ay), (ax, 1 - ax), (0, 0))
            blocks = blocks + jnp.pad(columns[:, :, :, ay, ax], shift)
    padded = blocks.reshape(batch, rows + 1, cols + 1, 2, 2, channels).transpose(0, 1, 3, 2, 4, 5)
    padded = padded.reshape(batch, 2 * rows + 2, 2 * cols + 2, channels)
    return padded[:, 1 : 1 + height, 1 : 1 + width]


def _transposed_fwd(y, down_kernel, height, width):
    return _transposed(y, down_kernel, height, width), (y, down_kernel)


def _transposed_bwd(height, width, residuals, cotangent):
    y, down_kernel = residuals
    dy = downconv(cotangent, down_kernel)
    # <cotangent, transposed(y, k)> = <downconv(cotangent, k), y>.
    _, kernel_vjp = jax.vjp(lambda k: _down_forward(cotangent, k), down_kernel)
    (d_down_kernel,) = kernel_vjp(y)
    return dy.astype(y.dtype), d_down_kernel.astype(down_kernel.dtype)


_transposed.defvjp(_transposed_fwd, _transposed_bwd)


def upconv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)))`` (NHWC, HWIO, kernel not flipped):
    the layer of ``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))``
    and of PyTorch's ``ConvTranspose2d(4, stride=2, padding=1)``, output exactly twice the input.

    It is the adjoint of the strided convolution ``downconv(., _flip_transpose(kernel))``, computed
    as one matrix product and an overlap-add (``_transposed``). Gradients: the input's is that
    strided convolution of the cotangent (``downconv``), the kernel's XLA's kernel gradient of it.
    Forward-mode differentiation (``jax.jvp``) is not defined (``_transposed`` is a custom VJP).
    """
    _, height, width, _ = x.shape
    return _transposed(x, _flip_transpose(kernel), 2 * height, 2 * width)


@jax.custom_vjp
def downconv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv(x, kernel, (2, 2), ((1, 1), (1, 1)))`` (NHWC, HWIO): the layer of
    ``nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))`` and of PyTorch's
    ``Conv2d(4, stride=2, padding=1)``, output ``floor(side / 2)``.

    The forward pass is XLA's own convolution. Gradients: the input's is the transposed
    convolution (``_transposed``, any side, odd ones too; XLA's own would be an input-dilated
    convolution, slow on CPU, also inside second-order gradients), the kernel's XLA's own.
    Forward-mode differentiation (``jax.jvp``) is not defined.
    """
    return _down_forward(x, kernel)


def _downconv_fwd(x, kernel):
    return _down_forward(x, kernel), (x, kernel)


def _downconv_bwd(residuals, cotangent):
    x, kernel = residuals
    _, height, width, _ = x.shape
    dx = _transposed(cotangent, kernel, height, width)
    _, kernel_vjp = jax.vjp(lambda k: _down_forward(x, k), kernel)
    (dkernel,) = kernel_vjp(cotangent)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


downconv.defvjp(_downconv_fwd, _downconv_bwd)


class _Conv4x4(nn.Module):
    """Holds exactly the parameters of Flax's ``Conv`` / ``ConvTranspose`` with a 4x4 kernel:
    ``kernel`` ``(4, 4, in, features)`` and ``bias`` ``(features,)``, same initialisers, same
    init randomness (the parameter names and module path decide it), and applies ``op`` in
    ``dtype`` (input, kernel and bias cast to it; the parameters themselves stay float32)."""

    features: int
    op: Callable[[jax.Array, jax.Array], jax.Array]
    use_bias: bool = True
    kernel_init: Callable = INITIALIZERS["default"]
    bias_init: Callable = nn.initializers.zeros_init()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
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
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _Conv4x4(
            self.features,
            upconv,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
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
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _Conv4x4(
            self.features,
            downconv,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            name="Conv_0",
        )(x)


class MLP(nn.Module):
    """Dense layers of ``widths`` with ``activation`` between them (none after the last), computed
    in ``dtype``."""

    widths: Sequence[int]
    activation: str = "relu"
    kernel_init: Callable = INITIALIZERS["default"]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        for index, width in enumerate(self.widths):
            x = nn.Dense(width, kernel_init=self.kernel_init, dtype=self.dtype)(x)
            if index + 1 < len(self.widths):
                x = act(x)
        return x
