import importlib
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from experiments import data, optim, rng
from experiments.errors import ConfigError
from vae_jax import family as vae_family
from vae_jax import objectives, updates
from vae_jax.defaults import default_model_config

SHAPE = (8, 8, 1)
ELBO_METRICS = {"loss", "elbo", "reconstruction", "kl", "kl_weight", "grad_norm"}
VAE_CONFIGS = [
    "vae_binarized_mnist",
    "vae_conv_binarized_mnist",
    "pixelvae_binarized_mnist",
    "iwae_binarized_mnist",
    "vae_mnist",
    "cvae_mnist",
    "beta_vae_shapes",
    "quickstart",
]


def tiny_config(**model_overrides) -> ml_collections.ConfigDict:
    config = base.get_base_config()
    config.family = "vae"
    config.model = default_model_config(
        image_shape=SHAPE, latent_dim=3, hidden_widths=(16,), conv_features=(4, 8), hidden=16
    )
    config.model.update(model_overrides)
    config.optimizer = optim.default_optimizer_config(learning_rate=1e-2)
    return config


def fake_batch(num=6, seed=0, labels=False):
    rs = np.random.RandomState(seed)
    batch = {"x": (rs.uniform(size=(num, *SHAPE)) < 0.3).astype(np.float32)}
    if labels:
        batch["label"] = (np.arange(num) % 3).astype(np.int32)
    return batch


def build(**model_overrides):
    fam = vae_family.make(tiny_config(**model_overrides))
    labels = bool(model_overrides.get("num_classes"))
    state = jax.jit(fam.init_state)(jax.random.key(0), fake_batch(labels=labels))
    return SimpleNamespace(
        fam=fam,
        state=state,
        train_step=jax.jit(fam.train_step),
        eval_step=jax.jit(fam.eval_step),
        labels=labels,
    )


@pytest.fixture(scope="module")
def mlp():
    """A tiny MLP family, its initial state and jitted steps (compiled once for the module)."""
    return build(iwae_k_train_eval=4)


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
    assert set(metrics) == ELBO_METRICS
    for value in metrics.values():
        assert value.shape == () and value.dtype == jnp.float32
        assert np.isfinite(value)
    np.testing.assert_allclose(metrics["loss"], -metrics["elbo"], rtol=1e-6)
    np.testing.assert_allclose(
        metrics["loss"], metrics["reconstruction"] + metrics["kl"], rtol=1e-6
    )
    assert float(metrics["kl_weight"]) == 1.0
    assert float(metrics["grad_norm"]) > 0
    # ema_decay = 0: no EMA is kept; the evaluation parameters are the parameters.
    assert state.ema_params is None and state.eval_params is state.params


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
    assert set(metrics) == {"loss", "elbo", "reconstruction", "kl", "nll_iwae"}
    for value in metrics.values():
        assert value.shape == (4,) and value.dtype == jnp.float32
    np.testing.assert_allclose(metrics["elbo"], -(metrics["reconstruction"] + metrics["kl"]))
    np.testing.assert_allclose(metrics["loss"], -metrics["elbo"])
    assert np.all(np.asarray(metrics["nll_iwae"]) > 0)
    # Example i's posterior noise depends only on the key and i, not on the rest of the batch.
    first_two = mlp.eval_step(mlp.state, {"x": batch["x"][:2]}, key)
    for name in metrics:
        np.testing.assert_allclose(metrics[name][:2], first_two[name], rtol=1e-5)


def test_output_bias_starts_at_the_data_mean(mlp):
    batch = fake_batch()
    bias = mlp.state.params["decoder"]["output_bias"]["bias"]
    pixel_mean = (batch["x"].sum(axis=0) + batch["x"].mean()) / (len(batch["x"]) + 1)
    np.testing.assert_allclose(jax.nn.sigmoid(bias), pixel_mean, rtol=1e-5)
    zeros = build(output_bias_init="zeros")
    np.testing.assert_array_equal(zeros.state.params["decoder"]["output_bias"]["bias"], 0.0)


def test_sample_shape_and_range(mlp):
    fam, state = mlp.fam, mlp.state
    samples = jax.jit(fam.sample, static_argnums=2)(state, jax.random.key(1), 5)
    assert samples.shape == (5, *SHAPE) and samples.dtype == jnp.float32
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


def test_grids(mlp):
    fam, state = mlp.fam, mlp.state
    batch = fake_batch(40)
    grids = jax.jit(fam.grids)(state, batch, jax.random.key(2))
    assert set(grids) == {"reconstructions", "prior_samples", "interpolations", "traversals"}
    assert grids["reconstructions"].shape == (64, *SHAPE)  # 32 (input, reconstruction) pairs
    np.testing.assert_array_equal(grids["reconstructions"][0::2], batch["x"][:32])
    assert grids["prior_samples"].shape == (64, *SHAPE)
    assert grids["interpolations"].shape == (10 * 10, *SHAPE)  # 10 pairs x 10 steps
    assert grids["traversals"].shape == (3 * 10, *SHAPE)  # latent_dim 3 x 10 values
    # Interpolation row i runs from the reconstruction of example i to that of example n - 1 - i.
    recon = grids["reconstructions"][1::2]
    np.testing.assert_allclose(grids["interpolations"][10], recon[1], atol=1e-5)
    mean, _ = fam.encode(state.eval_params, batch["x"][-2:])
    np.testing.assert_allclose(
        grids["interpolations"][19], fam.decode_means(state.eval_params, mean)[0], atol=1e-5
    )
    small = jax.jit(fam.grids)(state, fake_batch(3), jax.random.key(2))
    assert small["reconstructions"].shape == (6, *SHAPE)
    assert small["interpolations"].shape == (10, *SHAPE)
    for images in (*grids.values(), *small.values()):
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_kl_warmup_and_beta():
    fam = build(kl_weight=4.0, kl_warmup_steps=10, kl_warmup_start=0.5)
    batch, key = fake_batch(), jax.random.key(3)
    state, metrics = fam.train_step(fam.state, batch, key)
    assert float(metrics["kl_weight"]) == pytest.approx(0.5)
    np.testing.assert_allclose(
        metrics["loss"], metrics["reconstruction"] + 0.5 * metrics["kl"], rtol=1e-5
    )
    for i in range(5):
        state, metrics = fam.train_step(state, batch, jax.random.fold_in(key, i))
    assert float(metrics["kl_weight"]) == pytest.approx(0.5 + 3.5 * 5 / 10)
    # The eval loss is the negative ELBO whatever beta training uses.
    per_example = fam.eval_step(state, batch, key)
    np.testing.assert_allclose(per_example["loss"], -per_example["elbo"])


def test_free_bits_loss():
    fam = build(free_bits=2.0)
    batch, key = fake_batch(), jax.random.key(4)
    _, metrics = fam.train_step(fam.state, batch, key)
    # At init every dimension's KL is far below 2 nats: the KL term is the constant 3 * 2.
    assert float(metrics["kl"]) < 3.0
    np.testing.assert_allclose(metrics["loss"], metrics["reconstruction"] + 6.0, rtol=1e-5)


def test_iwae_objective():
    fam = build(objective="iwae", num_samples=5)
    batch, key = fake_batch(), jax.random.key(5)
    state, metrics = fam.train_step(fam.state, batch, key)
    assert set(metrics) == ELBO_METRICS | {"iwae_bound"}
    np.testing.assert_allclose(metrics["loss"], -metrics["iwae_bound"], rtol=1e-6)
    # The bound of the same 5 draws, recomputed from the pure functions.
    drawn = updates.draws(
        fam.state.params,
        batch["x"],
        None,
        key,
        5,
        model=fam.fam.model,
        likelihood=fam.fam.likelihood,
    )
    bound = objectives.iwae_bound(drawn.log_w)
    np.testing.assert_allclose(metrics["iwae_bound"], jnp.mean(bound), rtol=1e-5)
    losses = [float(metrics["loss"])]
    for i in range(10):
        state, metrics = fam.train_step(state, batch, jax.random.fold_in(key, i))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0]


def test_ema_parameters():
    fam = build(ema_decay=0.9)
    batch = fake_batch()
    state, _ = fam.train_step(fam.state, batch, jax.random.key(6))
    # Step 0: decay min(0.9, 1 / 10) = 0.1.
    for ema, old, new in zip(
        jax.tree.leaves(state.ema_params),
        jax.tree.leaves(fam.state.params),
        jax.tree.leaves(state.params),
        strict=True,
    ):
        np.testing.assert_allclose(ema, 0.1 * old + 0.9 * new, rtol=1e-5, atol=1e-7)
    # eval and sampling use the EMA parameters.
    swapped = state.replace(params=state.ema_params, ema_params=state.params)
    key = jax.random.key(1)
    assert not np.allclose(
        fam.eval_step(state, batch, key)["loss"], fam.eval_step(swapped, batch, key)["loss"]
    )


def test_no_ema_means_the_parameters_themselves(mlp):
    """With ``ema_decay = 0`` (the ``mlp`` fixture) eval and sampling use the parameters, bit for
    bit: the state keeps no second copy of them, which the step would have to write."""
    assert mlp.state.ema_params is None
    state, _ = mlp.train_step(mlp.state, fake_batch(), jax.random.key(6))
    assert state.ema_params is None and state.eval_params is state.params


def test_conditional_vae():
    cvae = build(num_classes=3)
    batch, key = fake_batch(labels=True), jax.random.key(7)
    state, metrics = cvae.train_step(cvae.state, batch, key)
    assert np.isfinite(float(metrics["loss"]))
    sample = jax.jit(cvae.fam.sample, static_argnums=2)
    zeros = sample(state, key, 4, jnp.zeros(4, jnp.int32))
    twos = sample(state, key, 4, jnp.full(4, 2, jnp.int32))
    assert zeros.shape == (4, *SHAPE) and not np.allclose(zeros, twos)
    # Default labels cycle through the classes: row 2 is class 2.
    np.testing.assert_allclose(sample(state, key, 4)[2], twos[2], rtol=1e-6)
    grids = jax.jit(cvae.fam.grids)(state, fake_batch(10, labels=True), key)
    assert grids["prior_samples"].shape == (30, *SHAPE)  # 10 per class, one row per class
    with pytest.raises(ConfigError, match="label"):
        cvae.fam.train_step(state, fake_batch(), key)


def test_unconditional_vae_draws_no_labels(mlp):
    assert mlp.fam.default_labels(4) is None
    assert not mlp.fam.conditional


@pytest.mark.parametrize(
    "overrides",
    [
        dict(likelihood="gaussian"),
        dict(likelihood="gaussian", learn_scale=True),
        dict(likelihood="discretized_logistic"),
    ],
    ids=["gaussian", "gaussian_learned", "logistic"],
)
def test_other_likelihoods_train(overrides):
    fam = build(**overrides)
    rs = np.random.RandomState(0)
    batch = {"x": (rs.randint(0, 256, size=(6, *SHAPE)) / 255.0).astype(np.float32)}
    state, metrics = fam.train_step(fam.state, batch, jax.random.key(0))
    assert all(np.isfinite(float(value)) for value in metrics.values())
    samples = fam.fam.sample(state, jax.random.key(1), 3)
    assert samples.shape == (3, *SHAPE)
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


def test_evaluation_metrics_hook(mlp):
    source = data.ArraySource(fake_batch(7), "fake")
    metrics = mlp.fam.evaluation_metrics(
        mlp.state, source, jax.random.key(0), {"iwae_k": 20, "batch_size": 3}
    )
    assert metrics["nll_iwae_k"] == 20 and metrics["num_examples"] == 7
    assert 0 < metrics["nll_iwae"] < -metrics["elbo"] + 1.0
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_iwae"] / (64 * np.log(2)))
    default_k = ml_collections.ConfigDict({"batch_size": 7, "max_examples": 2})
    small = build(iwae_k_eval=3).fam.evaluation_metrics(
        mlp.state, source, jax.random.key(0), default_k
    )
    assert small["nll_iwae_k"] == 3 and small["num_examples"] == 2


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


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(likelihood="poisson"), "likelihood"),
        (dict(objective="vi"), "objective"),
        (dict(num_samples=0), "num_samples"),
        (dict(free_bits=0.5, objective="iwae"), "free_bits"),
        (dict(kl_warmup_shape="cyclic"), "shape"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(output_bias_init="ones"), "output_bias_init"),
        (dict(kl_weight=-1.0), "kl_weight"),
    ],
)
def test_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        vae_family.make(tiny_config(**overrides))


def test_image_shape_mismatch_is_a_config_error():
    fam = vae_family.make(tiny_config())
    with pytest.raises(ConfigError, match="image_shape"):
        fam.init_state(jax.random.key(0), {"x": np.zeros((2, 28, 28, 1), np.float32)})


@pytest.mark.parametrize("name", VAE_CONFIGS)
def test_configs_build(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    assert config.family == "vae"
    fam = vae_family.make(config)
    assert fam.image_shape == tuple(config.model.image_shape)
    steps_per_eval = config.eval_every_steps
    assert config.num_train_steps % steps_per_eval == 0


@pytest.fixture(scope="module")
def autoregressive():
    return build(encoder="conv", autoregressive_kernel=3, autoregressive_features=4)


def test_autoregressive_family_trains_and_holds_the_output_bias(autoregressive):
    state, batch = autoregressive.state, fake_batch()
    assert "output_bias" not in state.params["decoder"]
    pixel_mean = (batch["x"].sum(axis=0) + batch["x"].mean()) / (len(batch["x"]) + 1)
    np.testing.assert_allclose(
        jax.nn.sigmoid(state.params["autoregressive"]["output_bias"]), pixel_mean, rtol=1e-5
    )
    losses = []
    for i in range(5):
        state, metrics = autoregressive.train_step(state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0]
    per_example = autoregressive.eval_step(state, batch, jax.random.key(9))
    assert per_example["loss"].shape == (6,)


def test_autoregressive_samples_are_per_example_and_seeded(autoregressive):
    fam, state = autoregressive.fam, autoregressive.state
    sample = jax.jit(fam.sample, static_argnums=2)
    five = sample(state, jax.random.key(1), 5)
    three = sample(state, jax.random.key(1), 3)
    assert five.shape == (5, *SHAPE) and five.dtype == jnp.float32
    assert float(five.min()) > 0.0 and float(five.max()) < 1.0  # probabilities along the way
    np.testing.assert_allclose(five[:3], three, atol=1e-6)  # row i depends on the key and i only
    other = sample(state, jax.random.key(2), 3)
    assert not np.allclose(other, three)
    with pytest.raises(ValueError, match="key"):
        fam.decode_means(state.eval_params, jnp.zeros((1, 3)))


def test_autoregressive_sample_probabilities_follow_the_model(autoregressive):
    """Every returned probability is p(x_i = 1 | x_<i, z) of the full parallel pass at the image the
    sampler drew: that image is recovered exactly from the probabilities and the documented
    uniforms (pixel i of image n: uniform(fold_in(fold_in(key, n), i)))."""
    fam, state = autoregressive.fam, autoregressive.state
    z = jax.random.normal(jax.random.key(3), (4, 3))
    key = jax.random.key(4)
    means = fam.autoregressive_means(state.eval_params, z, None, key)
    pixels = jnp.arange(np.prod(SHAPE), dtype=jnp.uint32)

    def uniforms(image_key):
        return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(image_key, i)))(pixels)

    u = jax.vmap(uniforms)(rng.example_keys(key, 4)).reshape((4, *SHAPE))
    drawn = (u < means).astype(jnp.float32)
    context = fam.context(state.eval_params, drawn)
    logits = fam.decode(state.eval_params, z, None, context)
    np.testing.assert_allclose(means, jax.nn.sigmoid(logits), rtol=1e-5, atol=1e-6)


def test_autoregressive_grids_and_evaluation(autoregressive):
    fam, state = autoregressive.fam, autoregressive.state
    grids = jax.jit(fam.grids)(state, fake_batch(12), jax.random.key(2))
    assert grids["reconstructions"].shape == (24, *SHAPE)
    assert grids["interpolations"].shape == (6 * 10, *SHAPE)
    source = data.ArraySource({"x": fake_batch(7)["x"]}, name="fake")
    metrics = fam.evaluation_metrics(state, source, jax.random.key(0), {"iwae_k": 12})
    assert metrics["num_examples"] == 7
    assert np.isfinite(metrics["nll_iwae"]) and metrics["nll_iwae"] > 0
    assert np.isfinite(metrics["elbo"]) and metrics["elbo"] < 0


def test_autoregressive_decoder_needs_a_bernoulli_likelihood():
    with pytest.raises(ConfigError, match="bernoulli"):
        vae_family.make(tiny_config(autoregressive_kernel=3, likelihood="gaussian"))
