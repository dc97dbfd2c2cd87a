"""``config.compute_dtype='bfloat16'`` in the VAE family (``experiments.precision``'s policy):
float32 parameters, optimiser state, posterior parameters, log-likelihoods, KL terms, losses and
metrics; bfloat16 products and activations. On tiny networks; the dtype checks read the traced
program and compile nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_vae_family import SHAPE, fake_batch, tiny_config

from conftest import traced_operations
from vae_jax import family as vae_family

PRODUCTS = ("dot_general", "conv_general_dilated")
# With ReLU networks only the likelihoods, the KL terms, the IWAE bound, the reparameterisation
# and Adam use these.
FLOAT32_ONLY = ("exp", "log", "log1p", "logistic", "rsqrt", "sqrt")

CASES = {
    "conv": dict(encoder="conv"),
    "mlp_conditional_iwae": dict(encoder="mlp", num_classes=3, objective="iwae", num_samples=2),
    "conv_autoregressive": dict(encoder="conv", autoregressive_kernel=3),
    "mlp_logistic": dict(encoder="mlp", likelihood="discretized_logistic", learn_scale=True),
}


def family(case: str, dtype: str):
    config = tiny_config(activation="relu", iwae_k_train_eval=2, **CASES[case])
    config.compute_dtype = dtype
    return vae_family.make(config), fake_batch(labels=bool(CASES[case].get("num_classes")))


def dtypes(avals) -> set[str]:
    return {str(aval.dtype) for aval in avals}


def floating_dtypes(tree) -> set[str]:
    return {
        str(leaf.dtype)
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_bfloat16_keeps_state_float32_and_computes_products_in_bfloat16(case):
    fam, batch = family(case, "bfloat16")
    key = jax.random.key(0)
    state = jax.eval_shape(fam.init_state, key, batch)  # traced, not run
    assert floating_dtypes(state) == {"float32"}  # parameters, Adam's moments
    new_state, metrics = jax.eval_shape(fam.train_step, state, batch, key)
    assert floating_dtypes(new_state) == {"float32"}
    assert all(m.dtype == jnp.float32 for m in metrics.values())
    eval_metrics = jax.eval_shape(fam.eval_step, state, batch, key)
    assert all(m.dtype == jnp.float32 for m in eval_metrics.values())
    # The posterior and the likelihood's parameters leave the networks as float32.
    mean, logvar = jax.eval_shape(fam.encode, state.params, batch["x"], batch.get("label"))
    assert mean.dtype == logvar.dtype == jnp.float32
    context = jax.eval_shape(fam.context, state.params, batch["x"])
    output = jax.eval_shape(fam.decode, state.params, mean, batch.get("label"), context)
    assert output.dtype == jnp.float32 and output.shape[:3] == (len(batch["x"]), *SHAPE[:2])
    if context is not None:  # the causal context is an activation
        assert context.dtype == jnp.bfloat16
    # Samples (ancestral ones too) are float32 images.
    samples = jax.eval_shape(lambda s, k: fam.sample(s, k, 3), state, key)
    assert samples.dtype == jnp.float32 and samples.shape == (3, *SHAPE)

    for step in (fam.train_step, fam.eval_step):
        operations = traced_operations(step, state, batch, key)
        products = [avals for name, avals in operations if name in PRODUCTS]
        # Every product of the encoder, the decoder and the head, forward and backward.
        assert products and all(dtypes(avals) == {"bfloat16"} for avals in products)
        transcendental = [avals for name, avals in operations if name in FLOAT32_ONLY]
        assert transcendental and all(dtypes(avals) == {"float32"} for avals in transcendental)


def test_float32_program_has_no_bfloat16():
    fam, batch = family("conv_autoregressive", "float32")
    key = jax.random.key(0)
    state = jax.eval_shape(fam.init_state, key, batch)
    operations = traced_operations(fam.train_step, state, batch, key)
    assert all(a.dtype != jnp.bfloat16 for _, avals in operations for a in avals)


def test_bfloat16_steps_are_finite_and_follow_float32():
    """Three steps of a conditional MLP VAE on the IWAE bound in each dtype from one initial state
    (``init_state`` creates the parameters in float32 whatever the dtype). The convolutions'
    bfloat16 numerics: ``tests/test_layers.py``."""
    fam32, batch = family("mlp_conditional_iwae", "float32")
    fam16, _ = family("mlp_conditional_iwae", "bfloat16")
    initial = jax.jit(fam32.init_state)(jax.random.key(0), batch)
    history = {}
    for fam in (fam32, fam16):
        state, step, history[fam] = initial, jax.jit(fam.train_step), []
        for i in range(3):
            state, metrics = step(state, batch, jax.random.key(10 + i))
            history[fam].append(jax.device_get(metrics))
    assert floating_dtypes(state) == {"float32"}
    for metrics16, metrics32 in zip(history[fam16], history[fam32], strict=True):
        assert all(np.isfinite(v) for v in metrics16.values())
        for name in ("loss", "iwae_bound", "reconstruction", "kl"):
            np.testing.assert_allclose(metrics16[name], metrics32[name], rtol=0.01, atol=0.02)
