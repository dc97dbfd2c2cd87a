"""Metrics against independent references: scipy's sqrtm, closed forms, direct O(n²) loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg

from experiments.errors import ConfigError
from experiments.evaluation import metrics


def random_features(seed: int, n: int, d: int, shift: float = 0.0, scale: float = 1.0):
    rs = np.random.RandomState(seed)
    mixing = rs.normal(size=(d, d)) / np.sqrt(d)
    return (rs.normal(size=(n, d)) @ mixing) * scale + shift


def scipy_fid(x, y) -> float:
    """pytorch-fid's computation in float64: scipy.linalg.sqrtm of sigma1 @ sigma2, real part."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [8, 64])
def test_fid_matches_scipy_sqrtm(d):
    x = random_features(0, 600, d)
    y = random_features(1, 500, d, shift=0.3, scale=1.5)
    expected = scipy_fid(x, y)
    assert expected > 0
    np.testing.assert_allclose(metrics.fid_from_features(x, y), expected, rtol=1e-6)


def test_fid_closed_form_for_two_gaussians():
    # Commuting covariances: S_i = Q diag(a_i) Q^T, so tr((S1 S2)^{1/2}) = sum sqrt(a1 a2).
    rs = np.random.RandomState(3)
    d = 16
    q, _ = np.linalg.qr(rs.normal(size=(d, d)))
    a1, a2 = rs.uniform(0.1, 4.0, d), rs.uniform(0.1, 4.0, d)
    mu1, mu2 = rs.normal(size=d), rs.normal(size=d)
    s1, s2 = (q * a1) @ q.T, (q * a2) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a1) - np.sqrt(a2)) ** 2)
    np.testing.assert_allclose(metrics.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-10)
    # One dimension: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s.
    value = metrics.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), [[9.0]])
    np.testing.assert_allclose(value, 2.0**2 + (2.0 - 3.0) ** 2, rtol=1e-12)


def test_fid_of_a_set_with_itself_is_zero():
    x = random_features(4, 1000, 32, scale=10.0)
    stats = metrics.gaussian_stats(x)
    assert metrics.fid(stats, stats) == pytest.approx(0.0, abs=1e-9 * np.trace(stats.sigma))
    assert metrics.fid_from_features(x, x.copy()) < 1e-9 * np.trace(stats.sigma)


def test_fid_refuses_too_few_samples_unless_forced():
    x, y = random_features(5, 100, 64), random_features(6, 1000, 64)
    with pytest.raises(metrics.MetricError, match="fewer than 2 x 64"):
        metrics.fid_from_features(x, y)
    assert isinstance(metrics.MetricError("x"), ConfigError)
    assert metrics.fid_from_features(x, y, force=True) > 0


def test_fid_is_real_and_finite_for_singular_covariances():
    # Fewer samples than dimensions and exactly duplicated columns: scipy's sqrtm returns a complex
    # (or badly conditioned) result here; ours must stay a finite real number.
    x = random_features(7, 20, 50)
    x[:, 10:20] = x[:, :10]
    y = random_features(8, 30, 50, shift=1.0)
    value = metrics.fid_from_features(x, y, force=True)
    assert isinstance(value, float) and np.isfinite(value) and value > 0


def test_gaussian_stats_match_numpy_and_do_not_depend_on_batching():
    x = random_features(9, 1001, 12, shift=1e3)  # a large offset tests the shifted accumulation
    stats = metrics.gaussian_stats(x)
    np.testing.assert_allclose(stats.mu, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    for batch in (1, 7, 500):
        running = metrics.RunningStats(12)
        for start in range(0, len(x), batch):
            running.update(x[start : start + batch])
        batched = running.finalize()
        np.testing.assert_allclose(batched.sigma, stats.sigma, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(batched.mu, stats.mu, rtol=1e-12)
        assert batched.n == 1001


def direct_mmd2(x, y) -> float:
    """Unbiased MMD² with k(a, b) = (a·b/d + 1)^3, by explicit loops over pairs."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (sum(a[i] * b[i] for i in range(d)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2.0 * xy


def test_mmd2_matches_direct_computation():
    x, y = random_features(10, 15, 4), random_features(11, 15, 4, shift=0.5)
    np.testing.assert_allclose(metrics.mmd2_unbiased(x, y), direct_mmd2(x, y), rtol=1e-10)


def test_kid_subsets_match_direct_computation():
    x, y = random_features(12, 40, 3), random_features(13, 30, 3, shift=0.2)
    mean, std = metrics.kid(x, y, num_subsets=4, subset_size=12, seed=5)
    generator = np.random.default_rng(5)
    values = []
    for _ in range(4):
        real_rows = generator.choice(40, 12, replace=False)
        fake_rows = generator.choice(30, 12, replace=False)
        values.append(direct_mmd2(x[real_rows], y[fake_rows]))
    np.testing.assert_allclose([mean, std], [np.mean(values), np.std(values)], rtol=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    # random_features draws its mixing matrix from the seed: one seed, one distribution.
    x, y = np.split(random_features(14, 4000, 16), 2)
    z = y + 0.5
    same, _ = metrics.kid(x, y, num_subsets=20, subset_size=500)
    different, _ = metrics.kid(x, z, num_subsets=20, subset_size=500)
    assert abs(same) < 0.01 < different


def test_inception_score_extremes_and_formula():
    n, k = 1000, 10
    uniform = np.zeros((n, k))
    np.testing.assert_allclose(metrics.inception_score(uniform), (1.0, 0.0), atol=1e-12)
    confident = np.full((n, k), -1e4)
    confident[np.arange(n), np.arange(n) % k] = 0.0  # one-hot, balanced within every split
    np.testing.assert_allclose(metrics.inception_score(confident)[0], k, rtol=1e-9)
    logits = np.random.RandomState(16).normal(size=(95, 4)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for part in np.split(p[:90], 10):  # 95 // 10 = 9 rows per split; the last 5 left out
        marginal = part.mean(0)
        scores.append(np.exp(np.mean(np.sum(part * np.log(part / marginal), axis=1))))
    np.testing.assert_allclose(
        metrics.inception_score(logits), (np.mean(scores), np.std(scores)), rtol=1e-10
    )


def direct_manifold_fraction(queries, points, k):
    """Fraction of queries within distance of the k-th neighbour radius of some point (loops)."""
    radii = []
    for i, p in enumerate(points):
        distances = sorted(np.linalg.norm(p - q) for j, q in enumerate(points) if j != i)
        radii.append(distances[k - 1])
    inside = [
        any(np.linalg.norm(q - p) <= r for p, r in zip(points, radii, strict=True)) for q in queries
    ]
    return float(np.mean(inside)), radii


def test_precision_recall_match_direct_computation(monkeypatch):
    monkeypatch.setattr(metrics, "DISTANCE_BLOCK", 7)  # blocks must not change the answer
    real, fake = random_features(17, 40, 3), random_features(18, 35, 3, shift=0.7)
    precision, recall = metrics.precision_recall(real, fake, k=3)
    expected_precision, _ = direct_manifold_fraction(fake, real, 3)
    expected_recall, _ = direct_manifold_fraction(real, fake, 3)
    assert (precision, recall) == pytest.approx((expected_precision, expected_recall), abs=1e-12)
    assert 0 < precision < 1 and 0 < recall < 1


def test_density_coverage_match_direct_computation(monkeypatch):
    monkeypatch.setattr(metrics, "DISTANCE_BLOCK", 5)
    real, fake = random_features(19, 30, 2), random_features(20, 25, 2, shift=0.4)
    density, coverage = metrics.density_coverage(real, fake, k=5)
    _, radii = direct_manifold_fraction(fake, real, 5)
    counts = [
        sum(np.linalg.norm(f - r) <= rad for r, rad in zip(real, radii, strict=True)) for f in fake
    ]
    covered = [
        any(np.linalg.norm(f - r) <= rad for f in fake) for r, rad in zip(real, radii, strict=True)
    ]
    np.testing.assert_allclose(density, np.sum(counts) / (5 * len(fake)), rtol=1e-12)
    np.testing.assert_allclose(coverage, np.mean(covered), rtol=1e-12)


def test_nearest_neighbour_metrics_of_identical_and_disjoint_sets():
    x = random_features(21, 200, 8)
    assert metrics.precision_recall(x, x.copy()) == (1.0, 1.0)
    assert metrics.density_coverage(x, x.copy())[1] == 1.0
    far = x + 1e3
    assert metrics.precision_recall(x, far) == (0.0, 0.0)
    assert metrics.density_coverage(x, far) == (0.0, 0.0)


def test_label_accuracy_and_intra_class_fid():
    logits = np.eye(3)[[0, 1, 2, 2]]
    assert metrics.label_accuracy(logits, [0, 1, 2, 0]) == 0.75
    # Probabilities of the requested label: softmax of (0, log 9, 0) gives 9/11 = 0.818 to class 1;
    # of (0, log 20, 0), 20/22 = 0.909. Only the second is confident (>= 0.9).
    confident = np.log([[1.0, 20.0, 1.0], [1.0, 9.0, 1.0], [1.0, 20.0, 1.0]])
    assert metrics.confident_accuracy(confident, [1, 1, 0]) == pytest.approx(1 / 3)
    assert metrics.label_accuracy(confident, [1, 1, 0]) == pytest.approx(2 / 3)
    real = random_features(22, 300, 2)
    real_labels = np.arange(300) % 3
    fake = real + np.where(real_labels == 1, 1.0, 0.0)[:, None]
    per_class = metrics.intra_class_fid(real, real_labels, fake, real_labels)
    assert set(per_class) == {0, 1, 2}
    assert per_class[0] == pytest.approx(0.0, abs=1e-9)
    assert per_class[1] == pytest.approx(2.0, rel=1e-9)  # mean shifted by (1, 1)
