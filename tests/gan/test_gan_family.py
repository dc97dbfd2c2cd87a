"""The GAN family's train step, EMA, lazy R1, clipping, spectral state, sampling and config checks,
on tiny networks (one compilation per family fixture)."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from experiments import rng
from experiments.errors import ConfigError
from experiments.optim import default_optimizer_config
from gan_jax import family as gan_family
from gan_jax.defaults import default_model_config, default_optimizers_config

SIDE, BATCH = 8, 4


def tiny_config(data="shapes", batch_size=BATCH, **model_overrides) -> ml_collections.ConfigDict:
    config = base.get_base_config()
    config.family = "gan"
    config.batch_size = batch_size
    config.data = base.get_data_config(name=data, image_size=SIDE)
    config.model = default_model_config(image_size=SIDE, latent_dim=3)
    config.model.generator.features = (8, 4)
    config.model.discriminator.features = (4, 8)
    for key, value in model_overrides.items():
        parent = config.model
        *path, leaf = key.split(".")
        for part in path:
            parent = parent[part]
        parent[leaf] = value
    config.optimizer = default_optimizers_config()
    return config


def image_batch(num=BATCH, seed=0, num_classes=3):
    rs = np.random.RandomState(seed)
    return {
        "x": rs.uniform(size=(num, SIDE, SIDE, 1)).astype(np.float32),
        "label": rs.randint(num_classes, size=num).astype(np.int32),
    }


def build(config, batch):
    fam = gan_family.make(config)
    state = jax.jit(fam.init_state)(jax.random.key(0), batch)
    return SimpleNamespace(
        fam=fam, state=state, train_step=jax.jit(fam.train_step), eval_step=jax.jit(fam.eval_step)
    )


def run_steps(setup, batch, num):
    state, history = setup.state, []
    for i in range(num):
        state, metrics = setup.train_step(state, batch, jax.random.key(100 + i))
        history.append(jax.device_get(metrics))
    return state, history


@pytest.fixture(scope="module")
def conditional():
    """Projection D with spectral norm, CBN generator, EMA from step 2, lazy R1 every 2 D updates,
    DiffAugment, 2 D updates per step (tests/gan/test_gan_updates.py checks lazy R1 exactly)."""
    config = tiny_config(
        batch_size=2 * BATCH,
        num_classes=3,
        d_steps=2,
        ema_decay=0.5,
        ema_start_step=2,
        augment="translation,cutout,color",
        loss="hinge",
        **{
            "generator.conditioning": "cbn",
            "discriminator.conditioning": "projection",
            "discriminator.norm": "spectral",
            "regularizers.r1": 1.0,
            "regularizers.r1_interval": 2,
        },
    )
    batch = image_batch(2 * BATCH)
    setup = build(config, batch)
    state, history = run_steps(setup, batch, 3)
    return SimpleNamespace(
        **vars(setup), batch=batch, final=state, history=history, fam_config=config
    )


def test_metrics_are_finite_float32_scalars(conditional):
    for metrics in conditional.history:
        for name, value in metrics.items():
            assert value.shape == () and value.dtype == np.float32, name
            assert np.isfinite(value), name
    assert int(conditional.final.step) == 3 and conditional.final.step.dtype == jnp.int32
    assert conditional.train_step._cache_size() == 1
    # R1 on one of the two D updates of every step (counts 0,1 | 2,3 | 4,5).
    assert all(metrics["r1_penalty"] > 0 for metrics in conditional.history)
    assert "gradient_penalty" not in conditional.history[0]


def test_ema_copies_before_the_start_step_then_averages(conditional):
    state = conditional.state
    for step in range(1, 4):
        previous = state
        state, _ = conditional.train_step(state, conditional.batch, jax.random.key(100 + step - 1))
        g = state.generator.variables()
        if step <= 2:
            jax.tree.map(np.testing.assert_array_equal, state.ema, g)
        else:  # ema = 0.5 * previous ema + 0.5 * new weights
            expected = jax.tree.map(lambda e, x: 0.5 * e + 0.5 * x, previous.ema, g)
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), state.ema, expected
            )
    assert set(state.ema) == {"params", "batch_stats"}


def test_spectral_vectors_change_only_in_the_train_step(conditional):
    before = conditional.state.discriminator.collections["spectral"]
    after = conditional.final.discriminator.collections["spectral"]
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before, after)
    assert all(jax.tree.leaves(changed))
    # eval_step and sample return no state: they read the stored vectors.
    metrics = conditional.eval_step(conditional.final, conditional.batch, jax.random.key(0))
    assert set(metrics) >= {"d_real", "d_fake", "d_accuracy", "d_real_logit", "d_fake_logit"}
    assert all(value.shape == (2 * BATCH,) for value in metrics.values())


def test_conditional_sampling(conditional):
    fam, state = conditional.fam, conditional.final
    key = jax.random.key(3)
    labels = jnp.array([2, 2, 0, 1])
    x = fam.sample(state, key, 4, labels)
    assert x.shape == (4, SIDE, SIDE, 1) and float(x.min()) >= 0 and float(x.max()) <= 1
    np.testing.assert_array_equal(x, fam.sample(state, key, 4, labels))
    # Without labels: the engine's one default, sample i of class i % 3.
    np.testing.assert_allclose(
        fam.sample(state, key, 4), fam.sample(state, key, 4, jnp.array([0, 1, 2, 0]))
    )
    assert not np.allclose(fam.sample(state, key, 4, jnp.array([0, 0, 0, 0]))[0], x[0])
    grid = fam.grids(state, conditional.batch, key)["samples"]
    assert grid.shape == (9, SIDE, SIDE, 1)  # 3 x 3, row r of class r


def test_acgan_clipping_and_minimax():
    config = tiny_config(
        num_classes=3,
        loss="minimax",
        **{
            "generator.conditioning": "embedding",
            "discriminator.conditioning": "auxiliary",
            "discriminator.norm": "batch",
            "regularizers.weight_clip": 0.01,
        },
    )
    batch = image_batch()
    setup = build(config, batch)
    state, history = run_steps(setup, batch, 2)
    assert {"d_aux_loss", "g_aux_loss", "d_aux_accuracy"} <= set(history[-1])
    for leaf in jax.tree.leaves(state.discriminator.params):
        assert float(jnp.max(jnp.abs(leaf))) <= 0.01 + 1e-7
    assert "batch_stats" in state.discriminator.collections
    metrics = setup.eval_step(state, batch, jax.random.key(0))
    assert {"aux_accuracy_real", "aux_accuracy_fake"} <= set(metrics)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_classes": 10}, "needs model.generator.conditioning"),
        ({"generator.conditioning": "cbn"}, "need config.model.num_classes > 0"),
        (
            {"discriminator.norm": "batch", "regularizers.gradient_penalty": 10.0},
            "set model.discriminator.norm to 'none' or 'spectral'",
        ),
        ({"d_steps": 3}, "must be a multiple of model.d_steps=3"),
        ({"loss": "kl"}, "config.model.loss='kl'"),
        ({"discriminator.norm": "layer"}, "config.model.discriminator.norm='layer'"),
        ({"augment": "flip"}, "unknown DiffAugment"),
        ({"image_size": 10}, "must be a multiple of 2\\*\\*len"),
        ({"architecture": "mlp", "generator.norm": "none"}, "needs model.architecture=dcgan"),
        ({"generator.weight_init": "glorot"}, "weight_init='glorot'"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        gan_family.make(tiny_config(**overrides))


def test_data_shape_mismatch_is_a_config_error():
    fam = gan_family.make(tiny_config())
    with pytest.raises(ConfigError, match=r"set model\.image_size and model\.channels"):
        fam.init_state(jax.random.key(0), {"x": np.zeros((2, 16, 16, 1), np.float32)})


@pytest.mark.parametrize("num_classes", [0, 3])
def test_shared_fakes_equal_a_fresh_forward_pass_on_the_d_updates_latents(num_classes):
    """With ``shared_fakes`` the G update reuses the D update's forward pass; its result equals a
    G update computed here by hand: G re-run on the D update's latents and labels, through the
    updated D, with the non-saturating loss (both optimisers SGD with learning rate 1, so an update
    is ``params - gradient``). The D update is checked by hand the same way."""
    conditioning = {}
    if num_classes:
        conditioning = {"generator.conditioning": "cbn", "discriminator.conditioning": "projection"}
    config = tiny_config(shared_fakes=True, num_classes=num_classes, **conditioning)
    sgd = default_optimizer_config(name="sgd", learning_rate=1.0)
    config.optimizer = default_optimizers_config(
        generator=sgd, discriminator=sgd.copy_and_resolve_references()
    )
    batch = image_batch(num_classes=max(num_classes, 1))
    setup = build(config, batch)
    state, key = setup.state, jax.random.key(7)
    new_state, _ = setup.train_step(state, batch, key)
    generator, discriminator = setup.fam.nets.generator, setup.fam.nets.discriminator

    real = jnp.asarray(batch["x"]) * 2 - 1
    labels = jnp.asarray(batch["label"]) if num_classes else None
    d_key = jax.random.fold_in(rng.purpose_key(key, "d_step"), 0)
    z = rng.normal_per_example(rng.purpose_key(d_key, "latent"), (BATCH, 3))
    g = state.generator

    def generate(params):
        variables = {"params": params, **g.collections}
        return generator.apply(variables, z, labels, train=True, mutable=["batch_stats"])

    def logits(d_params, x):  # D has no variables besides its parameters here
        return discriminator.apply({"params": d_params}, x, labels, train=True)[0]

    def d_loss(d_params, fake):
        real_logits, fake_logits = logits(d_params, real), logits(d_params, fake)
        return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))

    @jax.jit
    def oracle(g_params, d_params):
        fake, _ = generate(g_params)
        d_grads = jax.grad(d_loss)(d_params, fake)
        expected_d = jax.tree.map(lambda p, grad: p - grad, d_params, d_grads)

        def g_loss(params):
            fake, collections = generate(params)
            return jnp.mean(jax.nn.softplus(-logits(expected_d, fake))), collections

        g_grads, collections = jax.grad(g_loss, has_aux=True)(g_params)
        expected_g = jax.tree.map(lambda p, grad: p - grad, g_params, g_grads)
        return expected_d, expected_g, collections

    expected_d, expected_g, collections = oracle(g.params, state.discriminator.params)
    assert state.discriminator.collections == {}
    pairs = [
        (new_state.discriminator.params, expected_d),
        (new_state.generator.params, expected_g),
        (new_state.generator.collections, collections),
    ]
    for got_tree, want_tree in pairs:
        for got, want in zip(jax.tree.leaves(got_tree), jax.tree.leaves(want_tree), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_shared_fakes_need_one_d_step():
    with pytest.raises(ConfigError, match=r"shared_fakes needs model\.d_steps=1"):
        gan_family.make(tiny_config(batch_size=8, shared_fakes=True, d_steps=2))


def test_a_config_without_newer_model_keys_gets_their_defaults():
    """Workdirs written before a model key existed still load (the key's default applies)."""
    config = tiny_config().to_dict()
    del config["model"]["shared_fakes"], config["model"]["regularizers"]
    fam = gan_family.make(ml_collections.ConfigDict(config).lock())
    assert fam.hp.shared_fakes is False and fam.hp.r1 == 0.0


def test_scanned_d_updates_equal_the_unrolled_ones(conditional):
    """``d_loop='scan'`` runs the same D updates (keys, counts, lazy R1, spectral state) as the
    default Python loop, in a program that does not grow with ``d_steps``."""
    config = conditional.fam_config.copy_and_resolve_references()
    config.model.d_loop = "scan"
    scanned = build(config, conditional.batch)
    state, history = run_steps(scanned, conditional.batch, 3)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(conditional.final), strict=True):
        if jnp.issubdtype(got.dtype, jnp.floating):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, want)
    for got, want in zip(history, conditional.history, strict=True):
        assert got.keys() == want.keys()
        for name in got:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_d_loop_errors():
    with pytest.raises(ConfigError, match="d_loop"):
        gan_family.make(tiny_config(d_loop="vmap"))
    with pytest.raises(ConfigError, match=r"shared_fakes needs model\.d_loop='unroll'"):
        gan_family.make(tiny_config(shared_fakes=True, d_loop="scan"))
