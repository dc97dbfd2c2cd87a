"""Regularisers: penalties against finite differences, weight clipping, spectral normalisation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import rng
from experiments.layers import DownConv
from gan_jax import regularizers, spectral

BATCH, DIM = 5, 3
FD_STEP = 1e-2


def make_critic(seed=0):
    """A smooth 2-layer tanh critic with fixed random weights: x (batch, DIM) → (batch,)."""
    rs = np.random.RandomState(seed)
    w1, b1 = jnp.asarray(rs.normal(size=(DIM, 8))), jnp.asarray(rs.normal(size=8))
    w2 = jnp.asarray(rs.normal(size=8))
    return lambda x: jnp.tanh(x @ w1 + b1) @ w2


def finite_difference_norms(critic, x):
    """‖∇D(x_i)‖ per example by central differences on each coordinate."""
    x = np.asarray(x, np.float32)
    grads = np.zeros_like(x)
    for j in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, j] = FD_STEP
        up, down = np.asarray(critic(x + step)), np.asarray(critic(x - step))
        grads[:, j] = (up - down) / (2 * FD_STEP)
    return np.linalg.norm(grads, axis=1)


def uniforms(key, num):
    """The documented per-example draws: U[0, 1) from ``fold_in(key, i)`` for example i."""
    return np.array([float(jax.random.uniform(k, ())) for k in rng.example_keys(key, num)])


@pytest.fixture
def points():
    rs = np.random.RandomState(1)
    real = jnp.asarray(rs.normal(size=(BATCH, DIM)), jnp.float32)
    fake = jnp.asarray(rs.normal(size=(BATCH, DIM)) * 2, jnp.float32)
    return real, fake


def test_gradient_norms_match_finite_differences(points):
    critic = make_critic()
    real, _ = points
    np.testing.assert_allclose(
        regularizers.gradient_norms(critic, real), finite_difference_norms(critic, real), rtol=2e-3
    )


@pytest.mark.parametrize("one_sided", [False, True])
def test_gradient_penalty_matches_finite_differences(points, one_sided):
    critic = make_critic()
    real, fake = points
    key = jax.random.key(3)
    penalty = regularizers.gradient_penalty(critic, real, fake, key, one_sided=one_sided)
    eps = uniforms(key, BATCH)[:, None]
    interpolates = eps * np.asarray(real) + (1 - eps) * np.asarray(fake)
    gap = finite_difference_norms(critic, interpolates) - 1.0
    if one_sided:
        gap = np.maximum(gap, 0.0)
    np.testing.assert_allclose(float(penalty), np.mean(gap**2), rtol=5e-3)


def test_interpolates_lie_between_real_and_fake(points):
    real, fake = points
    x = regularizers.interpolate(real, fake, jax.random.key(0))
    # x - fake = eps * (real - fake) with one eps in [0, 1) per example.
    eps = np.asarray((x - fake) / (real - fake))
    np.testing.assert_allclose(eps, eps[:, :1] * np.ones((1, DIM)), rtol=1e-4, atol=1e-5)
    assert np.all((eps >= 0) & (eps < 1)) and len(np.unique(eps[:, 0])) == BATCH


def test_one_sided_penalty_ignores_small_gradients(points):
    real, fake = points
    gentle = lambda x: 0.1 * jnp.sum(x, axis=1)  # ‖∇‖ = 0.1 √3 < 1 everywhere
    key = jax.random.key(0)
    assert float(regularizers.gradient_penalty(gentle, real, fake, key, one_sided=True)) == 0.0
    two_sided = regularizers.gradient_penalty(gentle, real, fake, key)
    np.testing.assert_allclose(float(two_sided), (1 - 0.1 * np.sqrt(3)) ** 2, rtol=1e-5)


def test_r1_penalty_matches_finite_differences(points):
    critic = make_critic(2)
    real, _ = points
    expected = np.mean(finite_difference_norms(critic, real) ** 2)
    np.testing.assert_allclose(float(regularizers.r1_penalty(critic, real)), expected, rtol=5e-3)


def test_dragan_points_and_penalty(points):
    critic = make_critic(4)
    real, _ = points
    key = jax.random.key(5)
    # The documented points, drawn here: x + 0.5·std(x)·U[0, 1) per coordinate (noise keys of
    # purpose 'noise'), then interpolated towards x with one α ~ U[0, 1) per example ('alpha').
    noise_keys = rng.example_keys(rng.purpose_key(key, "noise"), BATCH)
    noise = np.stack([np.asarray(jax.random.uniform(k, (DIM,))) for k in noise_keys])
    x = np.asarray(real, np.float64)
    alpha = uniforms(rng.purpose_key(key, "alpha"), BATCH)[:, None]
    expected_points = alpha * x + (1 - alpha) * (x + 0.5 * x.std() * noise)
    perturbed = np.asarray(regularizers.dragan_perturb(real, key, scale=0.5))
    np.testing.assert_allclose(perturbed, expected_points, rtol=1e-5, atol=1e-6)
    offset = perturbed - x
    assert np.all(offset >= 0) and np.all(offset <= 0.5 * x.std() + 1e-6)
    expected = np.mean((finite_difference_norms(critic, expected_points) - 1.0) ** 2)
    penalty = regularizers.dragan_penalty(critic, real, key, scale=0.5)
    np.testing.assert_allclose(float(penalty), expected, rtol=5e-3)


def test_clip_weights():
    params = {"a": jnp.array([-1.0, 0.005, 2.0]), "b": {"c": jnp.array([[0.5]])}}
    clipped = regularizers.clip_weights(params, 0.01)
    np.testing.assert_allclose(clipped["a"], [-0.01, 0.005, 0.01])
    np.testing.assert_allclose(clipped["b"]["c"], [[0.01]])


# -- spectral normalisation ------------------------------------------------------------------------


def top_singular_value(matrix) -> float:
    return float(np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[0])


def matrix_with_spectrum(shape, singular_values, seed=0):
    """U diag(s) Vᵀ with random orthonormal U (m, n) and V (n, n)."""
    rs = np.random.RandomState(seed)
    u, _ = np.linalg.qr(rs.normal(size=(shape[0], shape[1])))
    v, _ = np.linalg.qr(rs.normal(size=(shape[1], shape[1])))
    return jnp.asarray((u * singular_values) @ v.T, jnp.float32)


def test_power_iteration_within_one_percent_after_20_iterations():
    # A DCGAN discriminator kernel's shape (4x4 convolution, 64 → 128 channels, as a 1024 x 128
    # matrix) with the second singular value at 0.9 of the first and the rest spread below. (A
    # freshly initialised Gaussian kernel is the hard case: its top singular values crowd at the
    # Marchenko-Pastur edge, and 20 iterations get within about 1.5%. Training separates them, and
    # SNGAN's one iteration per step carries u over, so the estimate keeps improving.)
    singular_values = np.concatenate([[2.0, 1.8], np.linspace(1.7, 0.1, 126)])
    matrix = matrix_with_spectrum((1024, 128), singular_values)
    u0 = jax.random.normal(jax.random.key(1), (128,))
    _, _, sigma = spectral.power_iteration(matrix, u0, 20)
    assert abs(float(sigma) / top_singular_value(matrix) - 1) < 0.01
    # The estimate approaches from below and improves with the iterations.
    _, _, sigma_5 = spectral.power_iteration(matrix, u0, 5)
    assert float(sigma_5) < float(sigma) <= top_singular_value(matrix) * (1 + 1e-5)


class SNConvNet(nn.Module):
    @nn.compact
    def __call__(self, x, update_stats: bool):
        x = spectral.SpectralNorm(DownConv(16))(x, update_stats=update_stats)
        return spectral.SpectralNorm(nn.Dense(1))(
            x.reshape(x.shape[0], -1), update_stats=update_stats
        )


def test_spectral_norm_layer_estimate_after_20_train_steps():
    net = SNConvNet()
    x = jnp.ones((2, 8, 8, 3))
    variables = net.init(jax.random.key(0), x, update_stats=False)
    assert set(variables) == {"params", "spectral"}
    apply = jax.jit(lambda v: net.apply(v, x, update_stats=True, mutable=["spectral"]))
    for _ in range(20):
        _, updates = apply(variables)
        variables = {**variables, **updates}
    kernel = variables["params"]["DownConv_0"]["Conv_0"]["kernel"]
    stats = variables["spectral"]["SpectralNorm_0"]
    expected = top_singular_value(spectral.as_matrix(kernel))
    assert abs(float(stats["DownConv_0/Conv_0/kernel/sigma"]) / expected - 1) < 0.01


def test_spectral_norm_normalises_and_only_updates_in_train_mode():
    dense = spectral.SpectralNorm(nn.Dense(6, use_bias=False), num_iterations=30)
    x = jnp.eye(4)
    variables = dense.init(jax.random.key(0), x, update_stats=False)
    # Without update_stats nothing may change, and the collection need not be mutable.
    y_eval = dense.apply(variables, x, update_stats=False)
    y, updates = dense.apply(variables, x, update_stats=True, mutable=["spectral"])
    assert not np.allclose(y_eval, y)
    # With 30 iterations the normalised kernel (= y, since x = I) has spectral norm 1.
    np.testing.assert_allclose(top_singular_value(y), 1.0, rtol=1e-3)
    u_before = variables["spectral"]["layer_instance/kernel/u"]
    assert not np.allclose(updates["spectral"]["layer_instance/kernel/u"], u_before)
    # Evaluating with the updated vector uses it as it is: the same normalised kernel.
    y_again = dense.apply({**variables, **updates}, x, update_stats=False)
    np.testing.assert_allclose(y_again, y, rtol=1e-4, atol=1e-6)
