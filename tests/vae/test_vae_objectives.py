import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vae_jax import objectives


def test_gaussian_kl_matches_numpy():
    rs = np.random.RandomState(0)
    mean = rs.normal(size=(3, 5)).astype(np.float32)
    logvar = rs.normal(size=(3, 5)).astype(np.float32)
    var = np.exp(logvar.astype(np.float64))
    # KL(N(m, s^2) || N(0, 1)) = log(1 / s) + (s^2 + m^2) / 2 - 1/2, summed over dims.
    per_dim = -0.5 * logvar + 0.5 * (var + mean.astype(np.float64) ** 2) - 0.5
    kl = objectives.gaussian_kl(jnp.asarray(mean), jnp.asarray(logvar))
    assert kl.shape == (3,)
    np.testing.assert_allclose(kl, per_dim.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(objectives.gaussian_kl_per_dim(mean, logvar), per_dim, rtol=1e-5)
    assert np.all(np.asarray(kl) >= 0)


def test_gaussian_kl_matches_a_monte_carlo_estimate():
    rs = np.random.RandomState(1)
    mean, logvar = np.array([[0.7, -1.2]]), np.array([[-0.5, 0.8]])
    z = mean + np.exp(0.5 * logvar) * rs.normal(size=(200_000, 2))
    log_q = stats.norm.logpdf(z, mean, np.exp(0.5 * logvar)).sum(axis=1)
    log_p = stats.norm.logpdf(z).sum(axis=1)
    kl = float(objectives.gaussian_kl(jnp.asarray(mean), jnp.asarray(logvar))[0])
    assert abs(np.mean(log_q - log_p) - kl) < 0.02


def test_gaussian_kl_is_zero_at_the_prior():
    kl = objectives.gaussian_kl(jnp.zeros((4, 7)), jnp.zeros((4, 7)))
    np.testing.assert_array_equal(kl, np.zeros(4))


def test_reparameterize_matches_numpy_and_broadcasts_over_draws():
    rs = np.random.RandomState(2)
    mean, logvar = rs.normal(size=(2, 3)), rs.normal(size=(2, 3))
    eps = rs.normal(size=(2, 4, 3))
    z = objectives.reparameterize(
        jnp.asarray(mean[:, None, :]), jnp.asarray(logvar[:, None, :]), jnp.asarray(eps)
    )
    assert z.shape == (2, 4, 3)
    expected = mean[:, None, :] + np.sqrt(np.exp(logvar))[:, None, :] * eps
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)
    # Differentiable in the posterior's parameters: dz/dmean = 1, dz/dlogvar = eps * std / 2.
    grads = jax.grad(lambda m, v: objectives.reparameterize(m, v, 1.5).sum(), argnums=(0, 1))(
        jnp.float32(0.3), jnp.float32(0.8)
    )
    np.testing.assert_allclose(grads, [1.0, 1.5 * np.exp(0.4) / 2], rtol=1e-6)


def test_kl_weight_schedule():
    linear = [
        float(objectives.kl_weight_schedule(s, weight=4.0, warmup_steps=100, start=1.0))
        for s in (0, 25, 50, 100, 1000)
    ]
    np.testing.assert_allclose(linear, [1.0, 1.75, 2.5, 4.0, 4.0], rtol=1e-6)
    cosine = [
        float(objectives.kl_weight_schedule(s, warmup_steps=100, shape="cosine"))
        for s in (0, 50, 100, 200)
    ]
    np.testing.assert_allclose(cosine, [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    assert float(objectives.kl_weight_schedule(7, weight=0.3)) == pytest.approx(0.3)
    traced = jax.jit(lambda s: objectives.kl_weight_schedule(s, warmup_steps=10))(jnp.int32(5))
    assert traced.dtype == jnp.float32 and float(traced) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        objectives.kl_weight_schedule(0, shape="cyclic")


def test_free_bits_kl():
    kl_per_dim = np.array([[0.1, 2.0, 0.0], [0.3, 4.0, 0.2]], np.float32)  # batch means .2, 3, .1
    np.testing.assert_allclose(objectives.free_bits_kl(kl_per_dim, 0.5), 0.5 + 3.0 + 0.5, rtol=1e-6)
    np.testing.assert_allclose(
        objectives.free_bits_kl(kl_per_dim, 0.0), kl_per_dim.sum(axis=1).mean(), rtol=1e-6
    )
    # Dimensions under the threshold get no gradient; the others the plain KL's.
    grad = jax.grad(lambda k: objectives.free_bits_kl(k, 0.5))(jnp.asarray(kl_per_dim))
    np.testing.assert_allclose(grad, [[0, 0.5, 0], [0, 0.5, 0]])


def test_diagonal_gaussian_log_prob_matches_scipy():
    rs = np.random.RandomState(3)
    z, mean, logvar = (
        rs.normal(size=(3, 4, 5)),
        rs.normal(size=(3, 1, 5)),
        rs.normal(size=(3, 1, 5)),
    )
    expected = stats.norm.logpdf(z, mean, np.exp(0.5 * logvar)).sum(axis=-1)
    np.testing.assert_allclose(
        objectives.diagonal_gaussian_log_prob(
            jnp.asarray(z), jnp.asarray(mean), jnp.asarray(logvar)
        ),
        expected,
        rtol=1e-5,
    )


def test_importance_log_weights_and_iwae_bound_match_numpy():
    rs = np.random.RandomState(4)
    batch, k, d = 2, 7, 3
    log_px = rs.normal(size=(batch, k)) - 50.0
    z, mean, logvar = (
        rs.normal(size=(batch, k, d)),
        rs.normal(size=(batch, d)),
        rs.normal(size=(batch, d)),
    )
    log_pz = stats.multivariate_normal(np.zeros(d)).logpdf(z.reshape(-1, d)).reshape(batch, k)
    log_qz = np.stack(
        [
            stats.multivariate_normal(mean[b], np.diag(np.exp(logvar[b]))).logpdf(z[b])
            for b in range(batch)
        ]
    )
    log_w = objectives.importance_log_weights(
        jnp.asarray(log_px), jnp.asarray(z), jnp.asarray(mean), jnp.asarray(logvar)
    )
    np.testing.assert_allclose(log_w, log_px + log_pz - log_qz, rtol=1e-5)
    bound = objectives.iwae_bound(log_w)
    expected = special.logsumexp(log_px + log_pz - log_qz, axis=1) - math.log(k)
    np.testing.assert_allclose(bound, expected, rtol=1e-5)
    # k = 1 is the single-sample ELBO; the bound never falls below the mean log-weight (Jensen).
    np.testing.assert_allclose(objectives.iwae_bound(log_w[:, :1]), log_w[:, 0])
    assert np.all(np.asarray(bound) >= np.asarray(log_w).mean(axis=1) - 1e-4)
    # Streamed in chunks (here 3 + 3 + 1 weights): the log-sum-exps of the chunks and the total k.
    chunks = np.stack([special.logsumexp(log_w[:, i : i + 3], axis=1) for i in (0, 3, 6)])
    np.testing.assert_allclose(objectives.iwae_bound(chunks, k=k, axis=0), expected, rtol=1e-5)
    annealed = objectives.importance_log_weights(
        jnp.asarray(log_px), jnp.asarray(z), jnp.asarray(mean), jnp.asarray(logvar), 0.5
    )
    np.testing.assert_allclose(annealed, log_px + 0.5 * (log_pz - log_qz), rtol=1e-5)
