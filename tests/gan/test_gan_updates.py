"""The GAN's pure update functions (``gan_jax.updates``) against independent computations: lazy R1
exactly on the D updates its clock names, a D update on fakes and labels brought from outside (as a
hybrid family calls it), the generator loss, and the hyper-parameters' checks.

The oracles apply the Flax modules directly, write the losses and the R1 penalty ‖∇ₓ D(x)‖² with
``jax.grad`` themselves, and use SGD with learning rate 1, so that a D update must equal
``params - gradient``."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import base
from experiments import rng
from experiments.optim import default_optimizer_config
from gan_jax import family as gan_family
from gan_jax import losses, networks, updates
from gan_jax.defaults import default_model_config, default_optimizers_config

B, LATENT, GAMMA = 6, 3, 4.0


def mlp_discriminator(num_classes=0, conditioning="none"):
    return networks.build_discriminator(
        "mlp",
        features=(8, 8),
        weight_init="default",
        norm="none",
        activation="tanh",  # smooth, so that R1's parameter gradient is not piecewise constant
        num_classes=num_classes,
        conditioning=conditioning,
    )


def points(seed, num=B):
    return jnp.asarray(np.random.RandomState(seed).normal(size=(num, 2)), jnp.float32)


# -- the oracle ------------------------------------------------------------------------------------


def critic(module, params, x, labels=None):
    logits, classes = module.apply({"params": params}, x, labels, train=True, update_stats=True)
    return logits, classes


def ns_d_loss(module, params, real, fake):
    """The non-saturating (= minimax) D loss, by hand: -log σ(D(x)) - log(1 - σ(D(G(z))))."""
    real_logits, _ = critic(module, params, real)
    fake_logits, _ = critic(module, params, fake)
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def r1(module, params, real):
    """R1's E‖∇ₓ D(x)‖² over the real batch, by hand."""
    grads = jax.grad(lambda x: jnp.sum(critic(module, params, x)[0]))(real)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=1))


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def expected_d_update(module, params, real, fake, due: bool, interval: int, lr: float = 1.0):
    """``(params - lr·∇(loss + due·k·γ/2·R1), R1 value or 0, lr·k·γ/2·∇R1 or 0)`` (SGD)."""
    adversarial = jax.grad(functools.partial(ns_d_loss, module))(params, real, fake)
    penalty, penalty_grad = jax.value_and_grad(functools.partial(r1, module))(params, real)
    weight = interval * GAMMA / 2 if due else 0.0
    step = jax.tree.map(lambda a, r: lr * (a + weight * r), adversarial, penalty_grad)
    expected = jax.tree.map(jnp.subtract, params, step)
    weighted = jax.tree.map(lambda r: lr * weight * r, penalty_grad)
    return expected, (penalty if due else 0.0), weighted


def assert_trees_close(got, want, **tolerance):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, **tolerance)


def max_abs(tree) -> float:
    return max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(tree))


# -- lazy R1 ---------------------------------------------------------------------------------------


def test_lazy_r1_applies_the_penalty_exactly_on_multiples_of_the_interval():
    """``d_update`` with ``r1_interval = 3``, counts 0..6 (traced): on counts 0, 3, 6 the update is
    the adversarial gradient plus 3γ/2 times R1's gradient, with ``r1_penalty`` its value; on the
    others the adversarial gradient alone, with ``r1_penalty`` exactly 0."""
    interval = 3
    module = mlp_discriminator()
    nets = updates.GANNets(discriminator=module, d_optimizer=optax.sgd(1.0))
    hp = updates.GANHyper(r1=GAMMA, r1_interval=interval)
    params = module.init(jax.random.key(0), points(0))["params"]
    d = updates.Network(params, {}, nets.d_optimizer.init(params))
    real, fake = points(1), points(2) * 3
    step = jax.jit(functools.partial(updates.d_update, nets=nets, hp=hp))
    for count in range(7):
        new_d, metrics = step(d, real, fake, None, jax.random.key(count), count)
        due = count % interval == 0
        expected, penalty, weighted = expected_d_update(module, params, real, fake, due, interval)
        assert_trees_close(new_d.params, expected, rtol=1e-5, atol=1e-6)
        if due:
            assert max_abs(weighted) > 1e-2  # R1 moves the parameters well beyond the tolerance
            assert float(metrics["r1_penalty"]) > 0
            np.testing.assert_allclose(metrics["r1_penalty"], penalty, rtol=1e-5)
        else:
            assert float(metrics["r1_penalty"]) == 0.0
        adversarial = ns_d_loss(module, params, real, fake)
        total = adversarial + (interval * GAMMA / 2 * penalty if due else 0.0)
        np.testing.assert_allclose(metrics["d_loss"], total, rtol=1e-5)
        np.testing.assert_allclose(metrics["d_adversarial_loss"], adversarial, rtol=1e-5)


def toy_config(d_learning_rate: float, **model_overrides) -> ml_collections.ConfigDict:
    config = base.get_base_config()
    config.family = "gan"
    config.data = base.get_data_config(name="ring2d")
    config.model = default_model_config(architecture="mlp", latent_dim=LATENT, data_dim=2)
    for name in ("generator", "discriminator"):
        config.model[name].update(
            features=(8, 8), norm="none", weight_init="default", activation="tanh"
        )
    config.model.update(model_overrides)
    config.optimizer = default_optimizers_config(
        discriminator=default_optimizer_config(name="sgd", learning_rate=d_learning_rate)
    )
    return config


@pytest.mark.parametrize("d_loop", ["unroll", "scan"])
def test_lazy_r1_clock_counts_d_updates_over_the_run(d_loop):
    """Three train steps of 2 D updates with ``r1_interval = 3``: D updates 0..5 over the run, R1
    on updates 0 (step 0, first) and 3 (step 1, second) and on none of step 2. Each step's D
    parameters equal two SGD steps of the oracle; the logged ``r1_penalty`` is the mean over the
    step's two updates of R1 (or 0 off the interval)."""
    interval, d_steps, lr = 3, 2, 0.05
    config = toy_config(lr, d_steps=d_steps, d_loop=d_loop)
    config.model.regularizers.update(r1=GAMMA, r1_interval=interval)
    config.batch_size = d_steps * B
    fam = gan_family.make(config)
    module, generator = fam.nets.discriminator, fam.nets.generator
    batches = [{"x": points(10 + step, d_steps * B)} for step in range(3)]
    state = jax.jit(fam.init_state)(jax.random.key(0), batches[0])
    train_step = jax.jit(fam.train_step)
    due_per_step = []
    for step, batch in enumerate(batches):
        key = jax.random.key(100 + step)
        new_state, metrics = train_step(state, batch, key)
        # The oracle: the documented keys and clock, the modules applied directly.
        params = state.discriminator.params
        real = batch["x"].reshape(d_steps, B, 2)
        penalties, due_here = [], []
        for index in range(d_steps):
            count = step * d_steps + index
            key_i = jax.random.fold_in(rng.purpose_key(key, "d_step"), index)
            z = rng.normal_per_example(rng.purpose_key(key_i, "latent"), (B, LATENT))
            fake = generator.apply({"params": state.generator.params}, z, None, train=True)
            due = count % interval == 0
            params, penalty, weighted = expected_d_update(
                module, params, real[index], fake, bool(due), interval, lr
            )
            if due:
                assert max_abs(weighted) > 1e-3  # well beyond the tolerance
            penalties.append(penalty)
            due_here.append(due)
        assert_trees_close(new_state.discriminator.params, params, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["r1_penalty"], np.mean(penalties), rtol=1e-5)
        if not any(due_here):
            assert float(metrics["r1_penalty"]) == 0.0
        due_per_step.append(due_here)
        state = new_state
    assert due_per_step == [[True, False], [False, True], [False, False]]


# -- a D update for hybrid families ----------------------------------------------------------------


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def test_d_update_on_fakes_and_labels_from_outside():
    """A family without a GAN generator (``GANNets`` without one) trains an ACGAN discriminator on
    its own fakes with their own labels: the update is SGD on the non-saturating loss plus the
    weighted class cross-entropies of real (real labels) and fake (fake labels) inputs."""
    module = mlp_discriminator(num_classes=3, conditioning="auxiliary")
    nets = updates.GANNets(discriminator=module, d_optimizer=optax.sgd(1.0))
    hp = updates.GANHyper(auxiliary=True, acgan_weight=0.5)
    real, fake = points(3), points(4) + 2.0
    labels, fake_labels = jnp.array([0, 1, 2, 0, 1, 2]), jnp.array([2, 2, 1, 0, 0, 1])
    params = module.init(jax.random.key(1), real, labels)["params"]
    d = updates.Network(params, {}, nets.d_optimizer.init(params))

    def loss(params, fake_labels):
        real_logits, real_classes = critic(module, params, real, labels)
        fake_logits, fake_classes = critic(module, params, fake, fake_labels)
        adversarial = jnp.mean(jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits))
        aux = cross_entropy(real_classes, labels) + cross_entropy(fake_classes, fake_labels)
        return adversarial + 0.5 * aux

    new_d, metrics = jax.jit(functools.partial(updates.d_update, nets=nets, hp=hp))(
        d, real, fake, labels, jax.random.key(0), 0, fake_labels=fake_labels
    )
    grads = jax.grad(loss)(params, fake_labels)
    expected = jax.tree.map(lambda p, g: p - g, params, grads)
    assert_trees_close(new_d.params, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["d_loss"], loss(params, fake_labels), rtol=1e-5)
    # The fakes' labels matter: with the real labels on the fakes the update differs.
    other = jax.tree.map(lambda p, g: p - g, params, jax.grad(loss)(params, labels))
    assert max_abs(jax.tree.map(jnp.subtract, other, expected)) > 1e-3


def test_generator_loss_with_the_auxiliary_classifier():
    module = mlp_discriminator(num_classes=3, conditioning="auxiliary")
    fake, labels = points(5), jnp.array([1, 0, 2, 2, 1, 0])
    params = module.init(jax.random.key(2), fake, labels)["params"]
    d = updates.Network(params, {}, None)
    for name, generator_of_logits in [
        ("non_saturating", lambda t: jnp.mean(jax.nn.softplus(-t))),
        ("hinge", lambda t: -jnp.mean(t)),
    ]:
        hp = updates.GANHyper(loss=losses.get_loss(name), auxiliary=True, acgan_weight=2.0)
        loss, terms = updates.generator_loss(
            d, fake, labels, jax.random.key(0), discriminator=module, hp=hp
        )
        logits, classes = critic(module, params, fake, labels)
        adversarial, aux = generator_of_logits(logits), cross_entropy(classes, labels)
        np.testing.assert_allclose(loss, adversarial + 2.0 * aux, rtol=1e-6)
        np.testing.assert_allclose(terms["g_adversarial_loss"], adversarial, rtol=1e-6)
        np.testing.assert_allclose(terms["g_aux_loss"], aux, rtol=1e-6)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"d_steps": 0}, "d_steps=0 must be >= 1"),
        ({"r1_interval": 0}, "r1_interval=0 must be >= 1"),
        ({"d_loop": "vmap"}, "d_loop='vmap'"),
        ({"shared_fakes": True, "d_steps": 2}, "shared_fakes needs d_steps=1"),
        ({"shared_fakes": True, "d_loop": "scan"}, "shared_fakes needs d_loop='unroll'"),
        ({"augment": ("flip",)}, "unknown augmentations"),
    ],
)
def test_hyper_parameter_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        updates.GANHyper(**fields)


def test_hyper_parameters_are_hashable_static_arguments():
    hp = updates.GANHyper(r1=1.0, augment=("color",))
    assert hash(hp) == hash(updates.GANHyper(r1=1.0, augment=("color",)))
    assert hp != updates.GANHyper(r1=2.0, augment=("color",))
