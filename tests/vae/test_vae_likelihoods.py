"""Each log-probability of ``vae_jax.likelihoods`` against an independent scipy / numpy reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vae_jax import likelihoods


def test_bernoulli_log_prob_matches_scipy():
    rs = np.random.RandomState(1)
    logits = rs.normal(scale=3.0, size=(2, 4, 4, 1)).astype(np.float32)
    x = (rs.uniform(size=logits.shape) < 0.5).astype(np.float32)
    p = special.expit(logits.astype(np.float64))
    expected = stats.bernoulli.logpmf(x, p).reshape(2, -1).sum(axis=1)
    log_prob = likelihoods.bernoulli_log_prob(jnp.asarray(logits), jnp.asarray(x))
    assert log_prob.shape == (2,)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)


def test_bernoulli_log_prob_is_finite_for_extreme_logits():
    logits = jnp.array([[200.0, -200.0, 200.0, -200.0]])
    x = jnp.array([[1.0, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose(likelihoods.bernoulli_log_prob(logits, x), [-400.0], rtol=1e-6)


def test_bernoulli_log_prob_gradient_is_x_minus_sigmoid():
    # Grey x too (binary cross-entropy), logits at 0 (where max(l, 0) has a kink) and extremes.
    logits = np.array([[0.0, 0.0, 1.5, -2.0, 30.0, -30.0, 0.3]], np.float32)
    x = np.array([[1.0, 0.0, 0.25, 1.0, 0.0, 1.0, 0.5]], np.float32)
    grad = jax.grad(lambda z: likelihoods.bernoulli_log_prob(z, jnp.asarray(x)).sum())(
        jnp.asarray(logits)
    )
    np.testing.assert_allclose(grad, x - special.expit(logits.astype(np.float64)), atol=1e-6)


def test_bernoulli_log_prob_of_grey_values_is_negative_cross_entropy():
    logits = np.array([[0.7, -1.2, 4.0]], np.float32)
    x = np.array([[0.2, 0.9, 0.5]], np.float32)
    p = special.expit(logits.astype(np.float64))
    expected = np.sum(x * np.log(p) + (1 - x) * np.log1p(-p))
    log_prob = likelihoods.bernoulli_log_prob(jnp.asarray(logits), jnp.asarray(x))
    np.testing.assert_allclose(log_prob, [expected], rtol=1e-6)


@pytest.mark.parametrize("per_pixel_scale", [False, True])
def test_gaussian_log_prob_matches_scipy(per_pixel_scale):
    rs = np.random.RandomState(2)
    x = rs.uniform(size=(3, 5, 5, 2))
    mean = rs.uniform(size=x.shape)
    log_scale = rs.normal(scale=0.5, size=x.shape) - 2.0 if per_pixel_scale else np.log(0.1)
    expected = stats.norm.logpdf(x, mean, np.exp(log_scale)).reshape(3, -1).sum(axis=1)
    log_prob = likelihoods.gaussian_log_prob(
        jnp.asarray(x, jnp.float32),
        jnp.asarray(mean, jnp.float32),
        jnp.float32(log_scale) if not per_pixel_scale else jnp.asarray(log_scale, jnp.float32),
    )
    assert log_prob.shape == (3,)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)


def reference_discretized_logistic(x, mean, log_scale, num_bins=256):
    """log P(bin) from scipy's logistic CDF in float64: bins of width 2 / (num_bins - 1) on [-1, 1],
    the end bins extended to +-inf."""
    y = 2.0 * x - 1.0
    h = 1.0 / (num_bins - 1)
    scale = np.exp(log_scale)
    # Above the mean the difference of survival functions keeps its digits in the tail.
    cdf_upper = np.where(x >= 1.0, 1.0, stats.logistic.cdf(y + h, mean, scale))
    cdf_lower = np.where(x <= 0.0, 0.0, stats.logistic.cdf(y - h, mean, scale))
    sf_upper = np.where(x >= 1.0, 0.0, stats.logistic.sf(y + h, mean, scale))
    sf_lower = np.where(x <= 0.0, 1.0, stats.logistic.sf(y - h, mean, scale))
    probability = np.where(y > mean, sf_lower - sf_upper, cdf_upper - cdf_lower)
    return np.log(probability).reshape(x.shape[0], -1).sum(axis=1)


def test_discretized_logistic_matches_scipy():
    rs = np.random.RandomState(3)
    x = rs.randint(0, 256, size=(4, 6, 6, 3)) / 255.0
    x[0, 0, 0] = [0.0, 1.0, 0.0]  # both end bins occur
    mean = rs.uniform(-1, 1, size=x.shape)
    log_scale = rs.uniform(-4.0, -1.0, size=x.shape)
    expected = reference_discretized_logistic(x, mean, log_scale)
    log_prob = likelihoods.discretized_logistic_log_prob(
        jnp.asarray(x, jnp.float32),
        jnp.asarray(mean, jnp.float32),
        jnp.asarray(log_scale, jnp.float32),
    )
    assert log_prob.shape == (4,)
    np.testing.assert_allclose(log_prob, expected, rtol=2e-5)


def test_discretized_logistic_sums_to_one_over_the_levels_and_is_stable_in_the_tails():
    levels = np.arange(256) / 255.0
    for mean, log_scale in [(0.3, -3.0), (-0.95, -6.0), (0.999, 0.5)]:
        log_probs = likelihoods.discretized_logistic_log_prob(
            jnp.asarray(levels, jnp.float32).reshape(256, 1),
            jnp.full((256, 1), mean, jnp.float32),
            jnp.full((256, 1), log_scale, jnp.float32),
        )
        assert np.all(np.isfinite(log_probs))
        np.testing.assert_allclose(
            special.logsumexp(np.asarray(log_probs, np.float64)), 0.0, atol=1e-4
        )
    # A pixel 200 scales away from the mean: finite, and close to scipy's float64 answer.
    far = likelihoods.discretized_logistic_log_prob(
        jnp.array([[0.5]]), jnp.array([[-0.9]]), jnp.array([[-5.0]])
    )
    expected = reference_discretized_logistic(
        np.array([[0.5]]), np.array([[-0.9]]), np.array([[-5.0]])
    )
    np.testing.assert_allclose(far, expected, rtol=1e-4)


@pytest.mark.parametrize(
    "likelihood",
    [
        likelihoods.Bernoulli(),
        likelihoods.Gaussian(0.1),
        likelihoods.Gaussian(learn_scale=True),
        likelihoods.DiscretizedLogistic(),
    ],
    ids=lambda lik: f"{lik.name}{lik.params_per_channel}",
)
def test_output_bias_decodes_to_the_pixel_mean(likelihood):
    pixel_mean = np.random.RandomState(4).uniform(0.05, 0.95, size=(3, 3, 2)).astype(np.float32)
    bias = likelihood.output_bias(jnp.asarray(pixel_mean))
    assert bias.shape == (3, 3, 2 * likelihood.params_per_channel)
    np.testing.assert_allclose(likelihood.mean(bias[None])[0], pixel_mean, rtol=1e-5)


def test_likelihood_objects_use_the_pure_functions():
    rs = np.random.RandomState(5)
    x = jnp.asarray(rs.randint(0, 256, size=(2, 4, 4, 1)) / 255.0, jnp.float32)
    output = jnp.asarray(rs.normal(scale=0.3, size=(2, 4, 4, 2)), jnp.float32)
    mean, log_scale = output[..., :1], output[..., 1:]
    np.testing.assert_allclose(
        likelihoods.DiscretizedLogistic().log_prob(output, x),
        likelihoods.discretized_logistic_log_prob(x, mean, jnp.maximum(log_scale, -7.0)),
    )
    np.testing.assert_allclose(
        likelihoods.Gaussian(learn_scale=True).log_prob(output, x),
        likelihoods.gaussian_log_prob(x, mean, log_scale),
    )
    np.testing.assert_allclose(
        likelihoods.Gaussian(0.2).log_prob(output[..., :1], x),
        likelihoods.gaussian_log_prob(x, mean, math.log(0.2)),
        rtol=1e-6,
    )
    assert likelihoods.Gaussian(0.2).bits_offset == 8.0
    assert likelihoods.Bernoulli().bits_offset == likelihoods.DiscretizedLogistic().bits_offset == 0


def test_make_likelihood_rejects_bad_names():
    with pytest.raises(ValueError, match="unknown likelihood"):
        likelihoods.make_likelihood("poisson")
    with pytest.raises(ValueError, match="gaussian_scale"):
        likelihoods.make_likelihood("gaussian", gaussian_scale=0.0)
