from types import SimpleNamespace

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from experiments import optim
from experiments.errors import ConfigError
from vae_jax import family as vae_family
from vae_jax.defaults import default_model_config

SHAPE = (8, 8, 1)


def tiny_config(**model_overrides) -> ml_collections.ConfigDict:
    config = base.get_base_config()
    config.family = "vae"
    config.model = default_model_config(
        image_shape=SHAPE, latent_dim=3, hidden_widths=(16,), conv_features=(4, 8), hidden=16
    )
    config.model.update(model_overrides)
    config.optimizer = optim.default_optimizer_config(learning_rate=1e-2)
    return config


def fake_batch(num=6, seed=0):
    rs = np.random.RandomState(seed)
    return {"x": (rs.uniform(size=(num, *SHAPE)) < 0.3).astype(np.float32)}


@pytest.fixture(scope="module")
def mlp():
    """A tiny MLP family, its initial state and jitted steps (compiled once for the module)."""
    fam = vae_family.make(tiny_config())
    state = jax.jit(fam.init_state)(jax.random.key(0), fake_batch())
    return SimpleNamespace(
        fam=fam,
        state=state,
        train_step=jax.jit(fam.train_step),
        eval_step=jax.jit(fam.eval_step),
    )


def test_train_step_decreases_loss_and_counts_steps(mlp):
    state, step = mlp.state, mlp.train_step
    batch = fake_batch()
    losses = []
    for i in range(8):
        state, metrics = step(state, batch, jax.random.key(100 + i))
        assert int(state.step) == i + 1
        losses.append(float(metrics["loss"]))
    assert state.step.dtype == jnp.int32
    assert losses[-1] < losses[0]
    assert set(metrics) == {"loss", "elbo", "reconstruction", "kl", "grad_norm"}
    for value in metrics.values():
        assert value.shape == () and value.dtype == jnp.float32
        assert np.isfinite(value)
    np.testing.assert_allclose(metrics["loss"], -metrics["elbo"], rtol=1e-6)
    np.testing.assert_allclose(
        metrics["loss"], metrics["reconstruction"] + metrics["kl"], rtol=1e-6
    )
    assert float(metrics["grad_norm"]) > 0


def test_train_step_is_deterministic(mlp):
    state, step = mlp.state, mlp.train_step
    batch, key = fake_batch(), jax.random.key(7)
    a_state, a_metrics = step(state, batch, key)
    b_state, b_metrics = step(state, batch, key)
    a_leaves = jax.tree.leaves((a_state, a_metrics))
    b_leaves = jax.tree.leaves((b_state, b_metrics))
    for a, b in zip(a_leaves, b_leaves, strict=True):
        np.testing.assert_array_equal(a, b)


def test_eval_step_is_per_example_and_independent_of_batch_composition(mlp):
    batch, key = fake_batch(4), jax.random.key(5)
    metrics = mlp.eval_step(mlp.state, batch, key)
    assert set(metrics) == {"loss", "elbo", "reconstruction", "kl"}
    for value in metrics.values():
        assert value.shape == (4,) and value.dtype == jnp.float32
    np.testing.assert_allclose(metrics["elbo"], -(metrics["reconstruction"] + metrics["kl"]))
    # Example i's posterior noise depends only on the key and i, not on the rest of the batch.
    first_two = mlp.eval_step(mlp.state, {"x": batch["x"][:2]}, key)
    for name in metrics:
        np.testing.assert_allclose(metrics[name][:2], first_two[name], rtol=1e-5)


def test_sample_shape_and_range(mlp):
    fam, state = mlp.fam, mlp.state
    samples = jax.jit(fam.sample, static_argnums=2)(state, jax.random.key(1), 5)
    assert samples.shape == (5, *SHAPE) and samples.dtype == jnp.float32
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


def test_grids(mlp):
    fam, state = mlp.fam, mlp.state
    batch = fake_batch(40)
    grids = jax.jit(fam.grids)(state, batch, jax.random.key(2))
    assert set(grids) == {"reconstructions", "prior_samples"}
    assert grids["reconstructions"].shape == (64, *SHAPE)  # 32 (input, reconstruction) pairs
    np.testing.assert_array_equal(grids["reconstructions"][0::2], batch["x"][:32])
    assert grids["prior_samples"].shape == (64, *SHAPE)
    small = jax.jit(fam.grids)(state, fake_batch(3), jax.random.key(2))
    assert small["reconstructions"].shape == (6, *SHAPE)
    for images in (*grids.values(), *small.values()):
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_conv_family_shapes():
    """The conv family's state and step, traced abstractly (as the engine's restore path does)."""
    fam = vae_family.make(tiny_config(encoder="conv"))
    batch = fake_batch(4)
    state = jax.eval_shape(fam.init_state, jax.random.key(0), batch)
    assert state.step.shape == () and state.step.dtype == jnp.int32
    new_state, metrics = jax.eval_shape(fam.train_step, state, batch, jax.random.key(1))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(value.shape == () for value in metrics.values())
    per_example = jax.eval_shape(fam.eval_step, state, batch, jax.random.key(1))
    assert all(value.shape == (4,) for value in per_example.values())


@pytest.mark.slow
def test_conv_family_trains():
    fam = vae_family.make(tiny_config(encoder="conv"))
    batch = fake_batch(4)
    state = jax.jit(fam.init_state)(jax.random.key(0), batch)
    step = jax.jit(fam.train_step)
    state, first = step(state, batch, jax.random.key(1))
    state, second = step(state, batch, jax.random.key(2))
    assert int(state.step) == 2
    assert np.isfinite(first["loss"]) and np.isfinite(second["loss"])


def test_kl_weight_scales_the_kl_in_the_loss(mlp):
    fam = vae_family.make(tiny_config(kl_weight=0.5))  # same architecture: mlp's params fit
    batch, key = fake_batch(4), jax.random.key(5)
    metrics = jax.jit(fam.eval_step)(mlp.state, batch, key)
    np.testing.assert_allclose(
        metrics["loss"], metrics["reconstruction"] + 0.5 * metrics["kl"], rtol=1e-6
    )
    unweighted = mlp.eval_step(mlp.state, batch, key)
    np.testing.assert_array_equal(metrics["kl"], unweighted["kl"])


def test_config_errors():
    with pytest.raises(ConfigError, match="likelihood"):
        vae_family.make(tiny_config(likelihood="gaussian"))
    fam = vae_family.make(tiny_config())
    with pytest.raises(ConfigError, match="image_shape"):
        fam.init_state(jax.random.key(0), {"x": np.zeros((2, 28, 28, 1), np.float32)})


@pytest.mark.parametrize("name", ["vae_binarized_mnist", "vae_mnist"])
def test_configs_build(name):
    import importlib

    config = importlib.import_module(f"configs.{name}").get_config()
    assert config.family == "vae"
    assert config.batch_size == 128
    fam = vae_family.make(config)
    assert fam.image_shape == (28, 28, 1)
