"""``config.compute_dtype='bfloat16'`` in the GAN family (``experiments.precision``'s policy):
float32 parameters, optimiser state, batch-norm statistics, losses and metrics; bfloat16 products
and activations. On tiny networks; most checks read the traced program and compile nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_gan_family import image_batch, tiny_config

from conftest import traced_operations
from gan_jax import family as gan_family
from gan_jax import networks

# A batch size that divides none of the tiny networks' weight dimensions (3, 4, 8, 16, 32, 64, 128):
# a product with an operand axis that is a multiple of it involves the examples.
B = 7
PRODUCTS = ("dot_general", "conv_general_dilated")
# Transcendental operations: in these ReLU / leaky-ReLU networks only the losses, the regularisers,
# batch norm's normalisation and the optimiser use them (tanh, G's output activation, excepted).
FLOAT32_ONLY = ("exp", "log", "log1p", "logistic", "rsqrt", "sqrt")

CASES = {
    # BN in G and D (statistics of D's both passes), non-saturating loss.
    "dcgan_batch_norm": {"discriminator.norm": "batch"},
    # Conditional BN in G, spectral norm and a projection head in D, R1.
    "dcgan_cbn_projection_sn": {
        "num_classes": 3,
        "generator.conditioning": "cbn",
        "discriminator.conditioning": "projection",
        "discriminator.norm": "spectral",
        "regularizers.r1": 1.0,
    },
    # Label embedding in G, ACGAN head, WGAN-GP.
    "resnet_acgan_gp": {
        "architecture": "resnet",
        "num_classes": 3,
        "generator.conditioning": "embedding",
        "generator.embedding_dim": 4,
        "discriminator.conditioning": "auxiliary",
        "generator.features": (8, 8),
        "discriminator.features": (4, 8),
        "loss": "wasserstein",
        "regularizers.gradient_penalty": 10.0,
    },
    # gan_ring2d's shape (its R1 left out: a cheaper program to compile, for real steps).
    "mlp_ring2d": {
        "architecture": "mlp",
        "data_dim": 2,
        "generator.norm": "batch",
        "generator.features": (8, 8),
        "discriminator.features": (8, 8),
    },
}


def family_and_batch(case: str, dtype: str):
    overrides = CASES[case]
    toy = overrides.get("architecture") == "mlp"
    config = tiny_config(data="ring2d" if toy else "shapes", batch_size=B, **overrides)
    config.compute_dtype = dtype
    batch = image_batch(B)
    if toy:
        batch = {"x": np.random.RandomState(0).normal(size=(B, 2)).astype(np.float32)}
    return gan_family.make(config), batch


def floating_dtypes(tree) -> set[str]:
    return {
        str(leaf.dtype)
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
    }


def dtypes(avals) -> set[str]:
    return {str(aval.dtype) for aval in avals}


def on_examples(avals) -> bool:
    """Whether an operation's operands involve the examples (an axis a multiple of ``B``)."""
    return any(size % B == 0 for aval in avals for size in aval.shape)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bfloat16_keeps_state_float32_and_computes_products_in_bfloat16(case):
    fam, batch = family_and_batch(case, "bfloat16")
    key = jax.random.key(0)
    state = jax.eval_shape(fam.init_state, key, batch)  # traced, not run
    # Parameters, optimiser states, batch-norm running averages, spectral vectors, the EMA.
    assert floating_dtypes(state) == {"float32"}
    out_state, metrics = jax.eval_shape(fam.train_step, state, batch, key)
    assert floating_dtypes(out_state) == {"float32"}
    assert all(m.dtype == jnp.float32 and m.shape == () for m in metrics.values())
    eval_metrics = jax.eval_shape(fam.eval_step, state, batch, key)
    assert all(m.dtype == jnp.float32 for m in eval_metrics.values())
    samples = jax.eval_shape(lambda s, k: fam.sample(s, k, 3), state, key)
    assert samples.dtype == jnp.float32 and samples.shape == (3, *fam.data_shape)

    operations = traced_operations(fam.train_step, state, batch, key)
    products = [avals for name, avals in operations if name in PRODUCTS]
    of_examples = [avals for avals in products if on_examples(avals)]
    of_weights = [avals for avals in products if not on_examples(avals)]
    # Every layer's product, forward and backward (gradient penalties' double backward too).
    assert of_examples and all(dtypes(avals) == {"bfloat16"} for avals in of_examples)
    # Only spectral normalisation multiplies weights alone (its power iteration), in float32.
    assert bool(of_weights) == (CASES[case].get("discriminator.norm") == "spectral")
    assert all(dtypes(avals) == {"float32"} for avals in of_weights)
    # Losses, log-sigmoids, the penalties' norms, batch norm's normalisation, Adam: float32.
    transcendental = [avals for name, avals in operations if name in FLOAT32_ONLY]
    assert transcendental and all(dtypes(avals) == {"float32"} for avals in transcendental)
    # G's output activation is an activation: bfloat16 (then cast to float32 at G's exit).
    tanh = [avals for name, avals in operations if name == "tanh"]
    assert all(dtypes(avals) == {"bfloat16"} for avals in tanh)


def test_float32_program_has_no_bfloat16():
    fam, batch = family_and_batch("dcgan_cbn_projection_sn", "float32")
    key = jax.random.key(0)
    state = jax.eval_shape(fam.init_state, key, batch)
    operations = traced_operations(fam.train_step, state, batch, key)
    assert all(a.dtype != jnp.bfloat16 for _, avals in operations for a in avals)


def test_bfloat16_steps_are_finite():
    """Three train steps of the ring2d MLP (batch norm in G) in bfloat16. (How the networks
    follow float32: ``test_image_networks_compute_in_bfloat16_and_return_float32``.)"""
    initial = {}
    for dtype in ("float32", "bfloat16"):
        fam, batch = family_and_batch("mlp_ring2d", dtype)
        initial[dtype] = jax.jit(fam.init_state)(jax.random.key(0), batch)
    # The dtype changes no initial value: parameters are created in float32 either way.
    jax.tree.map(np.testing.assert_array_equal, initial["float32"], initial["bfloat16"])
    state, step = initial["bfloat16"], jax.jit(fam.train_step)
    for i in range(3):
        state, metrics = step(state, batch, jax.random.key(10 + i))
        assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
    assert floating_dtypes(state) == {"float32"}
    stats = jax.tree.leaves(state.generator.collections["batch_stats"])
    start = jax.tree.leaves(initial["bfloat16"].generator.collections["batch_stats"])
    assert all(
        np.isfinite(now).all() and not np.array_equal(now, then)
        for now, then in zip(stats, start, strict=True)
    )


@pytest.mark.parametrize(("architecture", "conditioning"), [("dcgan", ("cbn", "projection"))])
def test_image_networks_compute_in_bfloat16_and_return_float32(architecture, conditioning):
    """The same parameters in both dtypes: G's images and D's logits come back float32 and agree
    to bfloat16's precision; G's images stay in [-1, 1]. (The other architectures' dtypes:
    ``test_bfloat16_keeps_state_float32_and_computes_products_in_bfloat16``.)"""
    modules = {}
    for dtype in ("float32", "bfloat16"):
        modules[dtype] = networks.build_networks(
            architecture,
            image_size=8,
            channels=1,
            num_classes=3,
            dtype=jnp.dtype(dtype),
            generator=dict(
                features=(8, 8),
                weight_init="dcgan_normal",
                norm="batch",
                conditioning=conditioning[0],
                embedding_dim=4,
            ),
            discriminator=dict(
                features=(4, 8),
                weight_init="dcgan_normal",
                norm="none",
                conditioning=conditioning[1],
            ),
        )
    g32, d32 = modules["float32"]

    @jax.jit  # one compilation: eagerly, each small operation would compile on its own
    def run(z, labels):
        g_vars = g32.init(jax.random.key(2), z, labels)
        images = {}
        for dtype, (g, _) in modules.items():
            images[dtype], _ = g.apply(g_vars, z, labels, mutable=["batch_stats"])
        d_vars = d32.init(jax.random.key(3), images["float32"], labels)
        outputs = {
            dtype: d.apply(d_vars, images[dtype], labels) for dtype, (_, d) in modules.items()
        }
        return images, outputs

    images, outputs = run(jax.random.normal(jax.random.key(1), (B, 3)), jnp.arange(B) % 3)
    assert images["bfloat16"].dtype == jnp.float32
    assert float(jnp.max(jnp.abs(images["bfloat16"]))) <= 1.0
    np.testing.assert_allclose(images["bfloat16"], images["float32"], atol=0.03)
    for logits16, logits32 in zip(outputs["bfloat16"], outputs["float32"], strict=True):
        if logits32 is None:
            continue
        assert logits16.dtype == jnp.float32
        np.testing.assert_allclose(logits16, logits32, rtol=0.05, atol=0.02)


@pytest.mark.parametrize("conditional", [False, True])
def test_batch_norm_statistics_are_float32_of_the_bfloat16_activations(conditional):
    """Activations away from zero (mean 10, std 1): their bfloat16 mean is off by up to 0.03 (the
    spacing of bfloat16 numbers at 10 is 0.0625), a float32 one agrees with numpy to 1e-6."""
    rs = np.random.RandomState(0)
    x = jnp.asarray(10.0 + rs.normal(size=(64, 3)), jnp.bfloat16)
    labels = jnp.asarray(rs.randint(2, size=64), jnp.int32)
    module = networks.GeneratorNorm(
        "batch", "cbn" if conditional else "none", 2, train=True, dtype=jnp.bfloat16
    )
    variables = module.init(jax.random.key(0), x, labels)
    y, updated = module.apply(variables, x, labels, mutable=["batch_stats"])
    stats = jax.tree.leaves(updated["batch_stats"])
    assert y.dtype == jnp.bfloat16 and {s.dtype for s in stats} == {jnp.dtype(jnp.float32)}
    values = np.asarray(x, np.float64)
    mean, var = values.mean(0), values.var(0)
    running = updated["batch_stats"]
    if conditional:
        running = running["ConditionalBatchNorm_0"]
    running = running["BatchNorm_0"]
    np.testing.assert_allclose(running["mean"], (1 - networks.BN_MOMENTUM) * mean, rtol=1e-6)
    expected_var = networks.BN_MOMENTUM + (1 - networks.BN_MOMENTUM) * var
    np.testing.assert_allclose(running["var"], expected_var, rtol=1e-4)
    # The normalised output: the float32 normalisation of those values, rounded to bfloat16.
    normalised = (values - mean) / np.sqrt(var + networks.BN_EPSILON)
    # (The conditional scale and shift are 1 and 0 at init.)
    np.testing.assert_allclose(np.asarray(y, np.float32), normalised, atol=2e-2, rtol=1e-2)
