"""``vae_jax.updates``: the one IWAE estimator against a per-draw reference, the chunked evaluation
and the objective sharing it, and the loss / update as pure functions of their hyper-parameters."""

import dataclasses
import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

from configs import base
from experiments import optim, rng
from vae_jax import evaluation, objectives, updates
from vae_jax import family as vae_family
from vae_jax.defaults import default_model_config

SHAPE = (4, 4, 1)
LATENT = 2


def tiny(**overrides):
    config = base.get_base_config()
    config.family = "vae"
    config.model = default_model_config(
        image_shape=SHAPE, latent_dim=LATENT, hidden_widths=(8,), conv_features=(4,), hidden=8
    )
    config.model.update(overrides)
    config.optimizer = optim.default_optimizer_config(learning_rate=1e-2)
    fam = vae_family.make(config)
    rs = np.random.RandomState(0)
    x = (rs.uniform(size=(3, *SHAPE)) < 0.4).astype(np.float32)
    labels = np.array([2, 0, 1], np.int32) if fam.num_classes else None
    batch = {"x": x} if labels is None else {"x": x, "label": labels}
    state = jax.jit(fam.init_state)(jax.random.key(0), batch)
    # Non-zero biases everywhere, so that a misplaced label or context row changes the numbers.
    params = jax.tree.map(lambda p: p + 0.1, state.params)
    return SimpleNamespace(fam=fam, params=params, state=state, x=x, labels=labels, batch=batch)


@pytest.fixture(scope="module", params=["conditional_mlp", "autoregressive_conv"])
def vae(request):
    if request.param == "conditional_mlp":
        return tiny(num_classes=3)
    return tiny(encoder="conv", autoregressive_kernel=3, autoregressive_features=2)


@functools.lru_cache
def estimator(fam):
    """``updates.log_weights`` of ``fam`` for a batch and noise ``(batch, k, d)``, jitted."""

    @jax.jit
    def run(params, x, labels, eps, kl_weight=1.0):
        k = eps.shape[1]
        return updates.log_weights(
            params,
            updates.encode(params, x, labels, model=fam.model),
            eps,
            updates.repeated_targets(params, x, labels, k, model=fam.model),
            model=fam.model,
            likelihood=fam.likelihood,
            kl_weight=kl_weight,
        )

    return run


@functools.lru_cache
def jitted_networks(fam):
    return tuple(map(jax.jit, (fam.encode, fam.context, fam.decode)))


def reference_log_weights(vae, eps, kl_weight):
    """``(log_w, log_px)`` draw by draw: each example's ``k`` latents decoded with its own label
    and the context of its own image, Bernoulli and Gaussian densities in float64 (scipy)."""
    fam, params = vae.fam, vae.params
    encode, context_of, decode = jitted_networks(fam)
    mean, logvar = (np.asarray(a, np.float64) for a in encode(params, vae.x, vae.labels))
    std = np.exp(0.5 * logvar)
    batch, k, _ = eps.shape
    log_w, log_px = np.zeros((batch, k)), np.zeros((batch, k))
    for i in range(batch):
        z = mean[i] + std[i] * eps[i]  # (k, d)
        labels = None if vae.labels is None else np.full(k, vae.labels[i], np.int32)
        context = context_of(params, vae.x[i : i + 1])
        if context is not None:
            context = np.broadcast_to(context, (k, *context.shape[1:]))
        logits = np.asarray(decode(params, z.astype(np.float32), labels, context), np.float64)
        x = vae.x[i].astype(np.float64)
        log_px[i] = np.sum(x * logits - np.logaddexp(0.0, logits), axis=(1, 2, 3))
        log_pz = stats.norm.logpdf(z).sum(axis=1)
        log_qz = stats.norm.logpdf(z, mean[i], std[i]).sum(axis=1)
        log_w[i] = log_px[i] + kl_weight * (log_pz - log_qz)
    return log_w, log_px


@pytest.mark.parametrize("kl_weight", [1.0, 0.25])
def test_log_weights_match_a_per_draw_reference(vae, kl_weight):
    k = 4
    eps = np.random.RandomState(1).normal(size=(3, k, LATENT)).astype(np.float32)
    log_w, log_px = estimator(vae.fam)(vae.params, vae.x, vae.labels, jnp.asarray(eps), kl_weight)
    expected_w, expected_px = reference_log_weights(vae, eps, kl_weight)
    assert log_w.shape == log_px.shape == (3, k)
    np.testing.assert_allclose(log_px, expected_px, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(log_w, expected_w, rtol=1e-5, atol=1e-4)


def test_chunked_evaluation_is_the_bound_of_the_same_estimator(vae):
    """``evaluation``'s chunked, streamed estimate (k = 7 in chunks of 3, the last one padded) is
    ``objectives.iwae_bound`` of ``updates.log_weights`` over all 7 draws of the documented noise,
    and its reconstruction the mean of their -log p(x | z): the one estimator of the objective."""
    fam, params, k = vae.fam, vae.params, 7
    key, offset = jax.random.key(5), 11
    chunked = evaluation.compiled_estimates(fam, k, 3)(
        params, vae.x, vae.labels, key, jnp.uint32(offset)
    )
    noise = evaluation.sample_noise(
        rng.example_keys(key, 3, offset), jnp.arange(k, dtype=jnp.uint32), LATENT
    )
    log_w, log_px = estimator(fam)(params, vae.x, vae.labels, noise)
    np.testing.assert_allclose(chunked[0], objectives.iwae_bound(log_w), rtol=1e-6)
    np.testing.assert_allclose(chunked[1], -np.mean(log_px, axis=1), rtol=1e-6)
    expected_w, _ = reference_log_weights(vae, np.asarray(noise), 1.0)
    expected = special.logsumexp(expected_w, axis=1) - np.log(k)
    np.testing.assert_allclose(chunked[0], expected, rtol=1e-5)


@pytest.fixture(scope="module")
def mlp():
    return tiny()


def test_loss_is_a_pure_function_of_the_hyperparameters_it_is_given(mlp):
    """``loss`` uses the ``hp`` passed to it, not the family's (an ELBO family here): a hybrid
    family can call it with its own settings, jitted with model, likelihood and hp static."""
    fam, params, batch, key = mlp.fam, mlp.params, mlp.batch, jax.random.key(2)
    loss = jax.jit(updates.loss, static_argnames=("model", "likelihood", "hp"))
    statics = dict(model=fam.model, likelihood=fam.likelihood)
    draws = jax.jit(updates.draws, static_argnums=4, static_argnames=("model", "likelihood"))
    iwae = dataclasses.replace(
        fam.hp, objective="iwae", num_samples=3, kl_weight=2.0, kl_warmup_steps=8
    )
    value, aux = loss(params, batch, key, jnp.int32(2), hp=iwae, **statics)
    assert float(aux["kl_weight"]) == pytest.approx(0.5)  # 2.0 * 2 / 8
    drawn = draws(params, mlp.x, None, key, 3, kl_weight=0.5, **statics)
    np.testing.assert_allclose(value, -np.mean(objectives.iwae_bound(drawn.log_w)), rtol=1e-6)
    np.testing.assert_allclose(aux["iwae_bound"], objectives.iwae_bound(drawn.log_w), rtol=1e-6)
    # Free bits of 5 nats per dimension: the KL term is the constant 2 * 5 at these parameters.
    free = dataclasses.replace(fam.hp, free_bits=5.0)
    value, aux = loss(params, batch, key, 0, hp=free, **statics)
    assert float(np.max(aux["kl"])) < 5.0
    np.testing.assert_allclose(value, np.mean(aux["reconstruction"]) + 10.0, rtol=1e-6)


def test_train_update_applies_the_optimizer_to_the_loss_gradient_and_the_ema(mlp):
    fam, batch, key = mlp.fam, mlp.batch, jax.random.key(3)
    hp = dataclasses.replace(fam.hp, ema_decay=0.5, ema_warmup=False)
    statics = dict(model=fam.model, likelihood=fam.likelihood, hp=hp)
    state = updates.VAEState(
        step=jnp.int32(4),
        params=mlp.params,
        opt_state=optax.sgd(0.1).init(mlp.params),
        ema_params=mlp.state.params,
    )
    update = jax.jit(functools.partial(updates.train_update, optimizer=optax.sgd(0.1), **statics))
    new, metrics = update(state, batch, key)
    grads = jax.jit(jax.grad(lambda p: updates.loss(p, batch, key, 4, **statics)[0]))(mlp.params)
    assert int(new.step) == 5
    for p, g, q, e0, e in zip(
        *map(jax.tree.leaves, (mlp.params, grads, new.params, mlp.state.params, new.ema_params)),
        strict=True,
    ):
        np.testing.assert_allclose(q, p - 0.1 * g, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(e, 0.5 * e0 + 0.5 * q, rtol=1e-6, atol=1e-7)
    assert float(metrics["grad_norm"]) == pytest.approx(
        float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads)))), rel=1e-5
    )
    np.testing.assert_allclose(metrics["elbo"], -(metrics["reconstruction"] + metrics["kl"]))
