import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import objectives


def test_gaussian_kl_matches_numpy():
    rs = np.random.RandomState(0)
    mean = rs.normal(size=(3, 5)).astype(np.float32)
    logvar = rs.normal(size=(3, 5)).astype(np.float32)
    var = np.exp(logvar.astype(np.float64))
    # KL(N(m, s^2) || N(0, 1)) = log(1 / s) + (s^2 + m^2) / 2 - 1/2, summed over dims.
    expected = np.sum(-0.5 * logvar + 0.5 * (var + mean.astype(np.float64) ** 2) - 0.5, axis=1)
    kl = objectives.gaussian_kl(jnp.asarray(mean), jnp.asarray(logvar))
    assert kl.shape == (3,)
    np.testing.assert_allclose(kl, expected, rtol=1e-5)
    assert np.all(np.asarray(kl) >= 0)


def test_gaussian_kl_is_zero_at_the_prior():
    kl = objectives.gaussian_kl(jnp.zeros((4, 7)), jnp.zeros((4, 7)))
    np.testing.assert_array_equal(kl, np.zeros(4))


def test_bernoulli_log_prob_matches_scipy():
    rs = np.random.RandomState(1)
    logits = rs.normal(scale=3.0, size=(2, 4, 4, 1)).astype(np.float32)
    x = (rs.uniform(size=logits.shape) < 0.5).astype(np.float32)
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    expected = stats.bernoulli.logpmf(x, p).reshape(2, -1).sum(axis=1)
    log_prob = objectives.bernoulli_log_prob(jnp.asarray(logits), jnp.asarray(x))
    assert log_prob.shape == (2,)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)


def test_bernoulli_log_prob_is_finite_for_extreme_logits():
    logits = jnp.array([[200.0, -200.0, 200.0, -200.0]])
    x = jnp.array([[1.0, 0.0, 0.0, 1.0]])
    log_prob = objectives.bernoulli_log_prob(logits, x)
    np.testing.assert_allclose(log_prob, [-400.0], rtol=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_elbo_is_minus_reconstruction_plus_kl(batch):
    rs = np.random.RandomState(2)
    logits = jnp.asarray(rs.normal(size=(batch, 3, 3, 1)), jnp.float32)
    x = jnp.asarray(rs.uniform(size=(batch, 3, 3, 1)) < 0.5, jnp.float32)
    mean = jnp.asarray(rs.normal(size=(batch, 2)), jnp.float32)
    logvar = jnp.asarray(rs.normal(size=(batch, 2)), jnp.float32)
    terms = objectives.elbo(logits, x, mean, logvar)
    elbo, reconstruction, kl = terms
    assert elbo.shape == reconstruction.shape == kl.shape == (batch,)
    np.testing.assert_array_equal(elbo, -(reconstruction + kl))
    np.testing.assert_array_equal(reconstruction, -objectives.bernoulli_log_prob(logits, x))
    np.testing.assert_array_equal(kl, objectives.gaussian_kl(mean, logvar))
