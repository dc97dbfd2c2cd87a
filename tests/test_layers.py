"""UpConv and DownConv compute exactly what Flax's ConvTranspose / Conv of the same geometry compute
(outputs and gradients within 1e-5), with the same parameters (names, shapes, initial values), so
checkpoints written before the fast formulations still load and give the same model. With
``dtype=bfloat16`` they, and MLP, compute in bfloat16 from float32 parameters."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import traced_operations
from experiments.layers import INITIALIZERS, MLP, DownConv, UpConv
from gan_jax.networks import DCGANDiscriminator, DCGANGenerator

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


class ReferenceUpConv(nn.Module):
    """UpConv as it was: Flax's transposed convolution (PyTorch ConvTranspose2d(4, 2, 1) geometry)."""

    features: int
    use_bias: bool = True
    kernel_init: object = INITIALIZERS["default"]

    @nn.compact
    def __call__(self, x):
        return nn.ConvTranspose(
            self.features,
            (4, 4),
            strides=(2, 2),
            padding=((2, 2), (2, 2)),
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
        )(x)


class ReferenceDownConv(nn.Module):
    """DownConv as it was: Flax's 4x4 stride-2 convolution with padding 1."""

    features: int
    use_bias: bool = True
    kernel_init: object = INITIALIZERS["default"]

    @nn.compact
    def __call__(self, x):
        return nn.Conv(
            self.features,
            (4, 4),
            strides=(2, 2),
            padding=((1, 1), (1, 1)),
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
        )(x)


def random_case(shape, down: bool, seed: int = 0):
    batch, height, width, cin, cout = shape
    keys = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.normal(keys[0], (batch, height, width, cin))
    out_hw = (height // 2, width // 2) if down else (2 * height, 2 * width)
    cotangent = jax.random.normal(keys[1], (batch, *out_hw, cout))
    # Gradient magnitudes of order one, so that 1e-5 is a meaningful tolerance in float32.
    cotangent = cotangent / np.sqrt(cotangent.size)
    kernel = jax.random.normal(keys[2], (4, 4, cin, cout)) / np.sqrt(4 * cin)
    bias = jax.random.normal(keys[3], (cout,))
    return x, cotangent, kernel, bias


def params_of(inner: str, kernel, bias):
    inner_params = {"kernel": kernel} if bias is None else {"kernel": kernel, "bias": bias}
    return {"params": {inner: inner_params}}


def outputs_and_grads(module, variables, x, cotangent):
    """``module(x)`` and the gradients of ``sum(module(x) * cotangent)`` w.r.t. the parameters and x."""

    @jax.jit
    def run(variables, x):
        y, pullback = jax.vjp(module.apply, variables, x)
        return y, pullback(cotangent)

    return run(variables, x)


# (batch, height, width, in channels, out channels); odd and non-square sides and 1 channel too.
CASES = [
    (UpConv, ReferenceUpConv, "ConvTranspose_0", False, shape, use_bias)
    for shape, use_bias in [
        ((2, 7, 7, 16, 8), True),
        ((2, 7, 7, 16, 8), False),
        ((3, 5, 6, 3, 1), True),
        ((2, 14, 14, 8, 1), True),
        ((1, 1, 1, 4, 2), True),
    ]
] + [
    (DownConv, ReferenceDownConv, "Conv_0", True, shape, use_bias)
    for shape, use_bias in [
        ((2, 14, 14, 8, 16), True),
        ((2, 14, 14, 8, 16), False),
        ((2, 7, 9, 3, 2), True),
        ((2, 28, 28, 1, 8), True),
        ((1, 2, 2, 5, 3), True),
    ]
]


@pytest.mark.parametrize(
    ("fast", "reference", "inner", "down", "shape", "use_bias"),
    CASES,
    ids=[f"{case[0].__name__}-{'x'.join(map(str, case[4]))}-bias{case[5]:d}" for case in CASES],
)
def test_outputs_and_gradients_equal_flax(fast, reference, inner, down, shape, use_bias):
    x, cotangent, kernel, bias = random_case(shape, down)
    variables = params_of(inner, kernel, bias if use_bias else None)
    features = shape[-1]
    y, (grads, dx) = outputs_and_grads(fast(features, use_bias=use_bias), variables, x, cotangent)
    y_ref, (grads_ref, dx_ref) = outputs_and_grads(
        reference(features, use_bias=use_bias), variables, x, cotangent
    )
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **TOLERANCE, err_msg="output")
    np.testing.assert_allclose(dx, dx_ref, **TOLERANCE, err_msg="input gradient")
    assert jax.tree.structure(grads) == jax.tree.structure(grads_ref)
    for name, expected in grads_ref["params"][inner].items():
        np.testing.assert_allclose(
            grads["params"][inner][name], expected, **TOLERANCE, err_msg=f"{name} gradient"
        )


@pytest.mark.parametrize(
    ("fast", "reference", "shape"),
    [(UpConv, ReferenceUpConv, (2, 7, 7, 6)), (DownConv, ReferenceDownConv, (2, 14, 14, 6))],
    ids=["UpConv", "DownConv"],
)
@pytest.mark.parametrize("use_bias", [True, False])
def test_parameters_identical_to_flax(fast, reference, shape, use_bias):
    """Same tree, shapes, dtypes and initial values (same init randomness): checkpoints unchanged."""
    x = jnp.ones(shape)
    init = INITIALIZERS["dcgan_normal"]
    ours = fast(5, use_bias=use_bias, kernel_init=init).init(jax.random.key(3), x)
    theirs = reference(5, use_bias=use_bias, kernel_init=init).init(jax.random.key(3), x)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_dcgan_parameter_layout_unchanged():
    """The DCGAN of configs/dcgan_mnist.py keeps its checkpoint paths and sizes (771 969 + 138 561)."""
    generator = DCGANGenerator(image_size=28, channels=1, features=(128, 64))
    g_vars = jax.eval_shape(generator.init, jax.random.key(0), jnp.zeros((2, 100)))
    shapes = {
        "/".join(str(getattr(k, "key", k)) for k in path): leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(g_vars["params"])[0]
    }
    assert shapes["UpConv_0/ConvTranspose_0/kernel"] == (4, 4, 128, 64)
    assert "UpConv_0/ConvTranspose_0/bias" not in shapes
    assert shapes["UpConv_1/ConvTranspose_0/kernel"] == (4, 4, 64, 1)
    assert shapes["UpConv_1/ConvTranspose_0/bias"] == (1,)
    assert sum(np.prod(s) for s in shapes.values()) == 771_969
    discriminator = DCGANDiscriminator(features=(64, 128))
    d_vars = jax.eval_shape(discriminator.init, jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
    d_params = d_vars["params"]
    assert d_params["DownConv_0"]["Conv_0"]["kernel"].shape == (4, 4, 1, 64)
    assert d_params["DownConv_1"]["Conv_0"]["bias"].shape == (128,)
    assert sum(leaf.size for leaf in jax.tree.leaves(d_params)) == 138_561


def convolutions(jaxpr) -> list:
    """Parameters of every convolution in a jaxpr, nested jaxprs (custom_vjp rules, jit) included."""
    found = []
    for equation in jaxpr.eqns:
        if equation.primitive.name == "conv_general_dilated":
            found.append(equation.params)
        for value in equation.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    found.extend(convolutions(sub.jaxpr))
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    found.extend(convolutions(sub))
    return found


@pytest.mark.parametrize(
    ("module", "shape"),
    [(UpConv(8), (2, 7, 7, 16)), (DownConv(8), (2, 14, 14, 16))],
    ids=["UpConv", "DownConv"],
)
def test_no_input_dilated_convolution(module, shape):
    """Forward pass, both gradients and the second-order gradient of a gradient penalty use no
    input-dilated convolution (a transposed convolution in XLA's form, slow on XLA:CPU). A strided
    convolution's kernel gradient, a window-dilated convolution, is XLA's fast own."""
    x = jnp.ones(shape)
    variables = module.init(jax.random.key(0), x)
    grad = jax.grad(lambda v, x: jnp.sum(module.apply(v, x) ** 2), argnums=(0, 1))

    def penalty(v, x):
        input_grad = jax.grad(lambda x: jnp.sum(module.apply(v, x) ** 2))(x)
        return jnp.sum(input_grad**2)

    for function in (grad, jax.grad(penalty)):
        params = convolutions(jax.make_jaxpr(function)(variables, x).jaxpr)
        assert params
        for conv in params:
            assert tuple(conv["lhs_dilation"]) == (1, 1), conv


@pytest.mark.parametrize(
    ("fast", "reference", "shape"),
    [(UpConv, ReferenceUpConv, (2, 5, 5, 3)), (DownConv, ReferenceDownConv, (2, 10, 10, 3))],
    ids=["UpConv", "DownConv"],
)
def test_second_order_gradients_equal_flax(fast, reference, shape):
    """Gradient penalties (WGAN-GP, R1) differentiate the input gradient w.r.t. the parameters."""
    x = jax.random.normal(jax.random.key(1), shape)

    def penalty_grad(module):
        variables = module.init(jax.random.key(2), x)

        def penalty(variables):
            input_grad = jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(variables, x))))(x)
            return jnp.sum(input_grad**2)

        return jax.jit(jax.grad(penalty))(variables)

    ours, theirs = penalty_grad(fast(4)), penalty_grad(reference(4))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, **TOLERANCE)


def relative_error(value, reference) -> float:
    """The largest error of ``value`` relative to ``reference``'s largest magnitude."""
    reference = np.asarray(reference, np.float32)
    error = np.max(np.abs(np.asarray(value, np.float32) - reference))
    return float(error / np.max(np.abs(reference)))


@pytest.mark.parametrize(
    ("fast", "reference", "inner", "down", "shape"),
    [
        (UpConv, ReferenceUpConv, "ConvTranspose_0", False, (2, 7, 7, 16, 8)),
        (DownConv, ReferenceDownConv, "Conv_0", True, (2, 14, 14, 8, 16)),
    ],
    ids=["UpConv", "DownConv"],
)
def test_bfloat16_computation_follows_flax_in_float32(fast, reference, inner, down, shape):
    """``dtype=bfloat16``: float32 parameters and input, every convolution and matrix product of the
    forward and backward pass in bfloat16, a bfloat16 output; the parameter and input gradients
    come back float32, all within bfloat16's precision of Flax's float32 layer."""
    x, cotangent, kernel, bias = random_case(shape, down)
    variables = params_of(inner, kernel, bias)
    module = fast(shape[-1], dtype=jnp.bfloat16)

    def run(variables, x):
        y, pullback = jax.vjp(module.apply, variables, x)
        return y, pullback(cotangent.astype(y.dtype))

    y, (grads, dx) = jax.jit(run)(variables, x)
    y_ref, (grads_ref, dx_ref) = outputs_and_grads(reference(shape[-1]), variables, x, cotangent)
    assert y.dtype == jnp.bfloat16 and dx.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    assert relative_error(y, y_ref) < 0.02
    assert relative_error(dx, dx_ref) < 0.02
    for name, expected in grads_ref["params"][inner].items():
        assert relative_error(grads["params"][inner][name], expected) < 0.02, name
    products = [
        avals
        for name, avals in traced_operations(run, variables, x)
        if name in ("conv_general_dilated", "dot_general")
    ]
    assert len(products) >= 3  # forward, input gradient, kernel gradient
    assert all(aval.dtype == jnp.bfloat16 for avals in products for aval in avals)


def test_bfloat16_mlp_follows_float32():
    mlp32, mlp16 = MLP((16, 8, 4)), MLP((16, 8, 4), dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.key(0), (5, 12))
    variables = mlp32.init(jax.random.key(1), x)
    initial16 = mlp16.init(jax.random.key(1), x)  # the same float32 parameters
    jax.tree.map(np.testing.assert_array_equal, initial16, variables)
    assert {leaf.dtype for leaf in jax.tree.leaves(initial16)} == {jnp.dtype(jnp.float32)}
    y16 = mlp16.apply(variables, x)
    assert y16.dtype == jnp.bfloat16
    assert relative_error(y16, mlp32.apply(variables, x)) < 0.02
    operations = traced_operations(mlp16.apply, variables, x)
    dots = [avals for name, avals in operations if name == "dot_general"]
    assert len(dots) == 3 and all(a.dtype == jnp.bfloat16 for avals in dots for a in avals)
