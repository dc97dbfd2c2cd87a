"""Sample-quality metrics from features: pure numpy, float64 throughout, independent of batch size.

Every function takes features as ``(n, d)`` arrays (any float dtype; converted to float64) or the
Gaussian statistics of such arrays, never images: which network made the features is the caller's
business (``features``), and is recorded in the protocol of every result.

- FID (Heusel et al., 2017): ``fid`` / ``frechet_distance``; the matrix square root goes through
  symmetric eigendecompositions, so it is real by construction and never fails.
- KID (Bińkowski et al., 2018): ``kid``; unbiased MMD² with the cubic polynomial kernel, over
  random subsets; mean and standard deviation over subsets.
- Inception / classifier score (Salimans et al., 2016): ``inception_score``; 10 splits.
- Improved precision and recall (Kynkäänniemi et al., 2019), k = 3: ``precision_recall``.
- Density and coverage (Naeem et al., 2020), k = 5: ``density_coverage``.
- For conditional models: ``label_accuracy`` and ``intra_class_fid``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from experiments.errors import ConfigError

# Kernel-distance settings of Bińkowski et al. and torch-fidelity / clean-fid.
KID_NUM_SUBSETS = 100
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10
PR_K = 3
DC_K = 5
# Rows of the distance matrix computed at once by the nearest-neighbour metrics (memory bound only:
# the results do not depend on it).
DISTANCE_BLOCK = 1024


class MetricError(ConfigError):
    """The inputs cannot give a meaningful number (too few samples, mismatched dimensions)."""


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``mu`` (d,), covariance ``sigma`` (d, d) (unbiased, ``ddof=1``) and count ``n``."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return self.mu.shape[0]


class RunningStats:
    """Accumulates the mean and covariance of features batch by batch, exactly in float64.

    Keeps the float64 sum and the sum of outer products of the rows *shifted by the first row seen*
    (which keeps the subtraction in ``finalize`` well conditioned); the result does not depend on how
    the rows are split into batches beyond float64 rounding (relative ~1e-15).
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.n = 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(dim, np.float64)
        self._outer = np.zeros((dim, dim), np.float64)

    def update(self, features: np.ndarray) -> None:
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise MetricError(f"expected features of shape (n, {self.dim}), got {features.shape}")
        if features.shape[0] == 0:
            return
        if self._shift is None:
            self._shift = features[0].copy()
        centred = features - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.n += features.shape[0]

    def finalize(self) -> GaussianStats:
        if self.n < 2:
            raise MetricError(f"need at least 2 feature vectors for a covariance, got {self.n}")
        mean_centred = self._sum / self.n
        sigma = (self._outer - self.n * np.outer(mean_centred, mean_centred)) / (self.n - 1)
        return GaussianStats(mean_centred + self._shift, (sigma + sigma.T) / 2, self.n)


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """Mean and unbiased covariance (``np.cov(features, rowvar=False)``) in float64."""
    features = as_features(features)
    stats = RunningStats(features.shape[1])
    stats.update(features)
    return stats.finalize()


def as_features(features, name: str = "features") -> np.ndarray:
    features = np.asarray(features, np.float64)
    if features.ndim != 2:
        raise MetricError(f"{name} must be (n, d), got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise MetricError(f"{name} contain non-finite values")
    return features


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric positive semi-definite square root of a symmetric matrix (eigenvalues < 0 from
    rounding are set to 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((sigma1 sigma2)^{1/2})`` for symmetric PSD matrices, real by construction.

    ``sigma1 sigma2`` is similar to the symmetric PSD ``A sigma2 A`` with ``A = sigma1^{1/2}``, so
    its square root has trace ``sum_i sqrt(lambda_i(A sigma2 A))``; eigenvalues below 0 (rounding)
    count as 0. No complex arithmetic, no iteration that can fail to converge.
    """
    root = psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64:

    ``||mu1 - mu2||² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})``

    The value is clipped at 0 from below (it is a squared distance; rounding can make ``d(x, x)``
    come out at about -1e-13 of the traces).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise MetricError(
            f"statistics of different dimensions: {mu1.shape}/{sigma1.shape} vs "
            f"{mu2.shape}/{sigma2.shape}"
        )
    difference = mu1 - mu2
    value = (
        difference @ difference
        + np.trace(sigma1)
        + np.trace(sigma2)
        - 2.0 * trace_sqrt_product(sigma1, sigma2)
    )
    return max(float(value), 0.0)


def check_fid_sample_size(n: int, dim: int, force: bool, what: str = "set") -> None:
    if n < 2 * dim and not force:
        raise MetricError(
            f"FID of a {what} of {n} samples with {dim}-d features: fewer than 2 x {dim} = "
            f"{2 * dim} samples give a rank-deficient covariance and a strongly biased FID; use "
            "more samples (or force=True / --force_fid to compute it anyway)"
        )


def fid(stats1: GaussianStats, stats2: GaussianStats, *, force: bool = False) -> float:
    """FID between two feature sets given their ``GaussianStats``.

    Raises:
        MetricError: either set has fewer than twice the feature dimension samples, unless
            ``force``.
    """
    check_fid_sample_size(stats1.n, stats1.dim, force, "first set")
    check_fid_sample_size(stats2.n, stats2.dim, force, "second set")
    return frechet_distance(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)


def fid_from_features(features1, features2, *, force: bool = False) -> float:
    """``fid(gaussian_stats(features1), gaussian_stats(features2))``."""
    return fid(gaussian_stats(features1), gaussian_stats(features2), force=force)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``k(x, y) = (x·y / d + 1)³`` for all pairs of rows (KID's kernel)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with ``polynomial_kernel`` between two sets of the same size ``m``:

    ``sum_{i≠j} k(x_i, x_j) / (m(m-1)) + sum_{i≠j} k(y_i, y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i, y_j) / m²``
    """
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off_diagonal - 2.0 * k_xy.sum() / (m * m))


def kid(
    real,
    generated,
    *,
    num_subsets: int = KID_NUM_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: ``(mean, std)`` of ``mmd2_unbiased`` over ``num_subsets`` pairs of
    subsets of ``min(subset_size, n_real, n_generated)`` rows each, drawn without replacement within
    a subset (``np.random.default_rng(seed)``: the real subset, then the generated one, per pair).
    ``std`` is the population standard deviation over subsets (``ddof=0``, as torch-fidelity).
    """
    real, generated = as_features(real, "real features"), as_features(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise MetricError(f"feature dimensions differ: {real.shape[1]} vs {generated.shape[1]}")
    size = min(subset_size, real.shape[0], generated.shape[0])
    if size < 2:
        raise MetricError(f"KID needs at least 2 samples per set, got {size}")
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        real_rows = generator.choice(real.shape[0], size, replace=False)
        generated_rows = generator.choice(generated.shape[0], size, replace=False)
        values.append(mmd2_unbiased(real[real_rows], generated[generated_rows]))
    return float(np.mean(values)), float(np.std(values))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(logits, *, splits: int = IS_SPLITS) -> tuple[float, float]:
    """Inception (or classifier) score ``exp(E_x KL(p(y|x) || p(y)))`` from class logits.

    The rows are cut, in order, into ``splits`` consecutive parts of equal size (``n // splits``
    rows; the last ``n % splits`` rows are left out, as in Salimans et al.'s code); within each part
    ``p(y)`` is the mean of ``p(y|x)``. Returns the mean and population std (``ddof=0``) of the
    per-split scores.
    """
    log_p = log_softmax(as_features(logits, "logits"))
    size = log_p.shape[0] // splits
    if size < 1:
        raise MetricError(f"{log_p.shape[0]} samples cannot make {splits} splits")
    scores = []
    for index in range(splits):
        part = log_p[index * size : (index + 1) * size]
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0))
        kl = np.sum(p * (part - log_marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of all row pairs, float64, clipped at 0."""
    squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.clip(squared, 0.0, None)


def blocks(n: int) -> Iterable[slice]:
    for start in range(0, n, DISTANCE_BLOCK):
        yield slice(start, min(start + DISTANCE_BLOCK, n))


def knn_radii_many(features: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """For each ``k`` in ``ks``: the squared distance of each row to its ``k``-th nearest other row
    of the same set (one pass over the distance matrix for all ``ks``)."""
    ks = tuple(sorted(set(ks)))
    if features.shape[0] <= ks[-1]:
        raise MetricError(f"{features.shape[0]} samples: need more than k = {ks[-1]}")
    radii = {k: np.empty(features.shape[0]) for k in ks}
    for rows in blocks(features.shape[0]):
        # Index k of the sorted row is the k-th neighbour: index 0 is the point itself (distance 0).
        partitioned = np.partition(squared_distances(features[rows], features), ks, axis=1)
        for k in ks:
            radii[k][rows] = partitioned[:, k]
    return radii


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each row to its ``k``-th nearest other row of the same set."""
    return knn_radii_many(features, (k,))[k]


def coverage_counts(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray):
    """For each query, how many balls ``B(centre_i, radius_i)`` contain it; for each centre, whether
    any query lies in its ball (closed balls, squared distances)."""
    counts = np.zeros(queries.shape[0], np.int64)
    covered = np.zeros(centres.shape[0], bool)
    for rows in blocks(queries.shape[0]):
        inside = squared_distances(queries[rows], centres) <= radii[None, :]
        counts[rows] = inside.sum(axis=1)
        covered |= inside.any(axis=0)
    return counts, covered


def precision_recall(
    real, generated, *, k: int = PR_K, real_radii: np.ndarray | None = None
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019).

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's ``k``-th nearest neighbour in the same set. Precision: the fraction of generated points
    inside the real manifold; recall: the fraction of real points inside the generated manifold.
    ``real_radii``: ``knn_radii(real, k)`` when the caller already has it.
    """
    real, generated = as_features(real, "real features"), as_features(generated, "generated")
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    precision_counts, _ = coverage_counts(generated, real, real_radii)
    recall_counts, _ = coverage_counts(real, generated, knn_radii(generated, k))
    return float(np.mean(precision_counts > 0)), float(np.mean(recall_counts > 0))


def density_coverage(
    real, generated, *, k: int = DC_K, real_radii: np.ndarray | None = None
) -> tuple[float, float]:
    """Density and coverage (Naeem et al., 2020), balls of ``k``-NN radius around *real* points only.

    Density: ``sum_j #{i: Y_j in B(X_i)} / (k M)`` (1 on average for generated = real; can exceed 1).
    Coverage: the fraction of real balls that contain at least one generated point.
    ``real_radii``: ``knn_radii(real, k)`` when the caller already has it.
    """
    real, generated = as_features(real, "real features"), as_features(generated, "generated")
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    counts, covered = coverage_counts(generated, real, real_radii)
    return float(counts.sum() / (k * generated.shape[0])), float(np.mean(covered))


def label_accuracy(logits, labels) -> float:
    """The fraction of samples the classifier assigns to the label they were generated for."""
    predicted = np.argmax(np.asarray(logits), axis=1)
    return float(np.mean(predicted == np.asarray(labels)))


CONFIDENT_PROBABILITY = 0.9


def confident_accuracy(logits, labels, threshold: float = CONFIDENT_PROBABILITY) -> float:
    """The fraction of samples to whose requested label the classifier gives a probability of at
    least ``threshold`` (softmax of ``logits``, float64): an accuracy that a blurred or ambiguous
    sample, classified right but without conviction, does not earn."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    chosen = log_probs[np.arange(len(logits)), np.asarray(labels)]
    return float(np.mean(chosen >= np.log(threshold)))


def intra_class_fid(
    real, real_labels, generated, generated_labels, *, force: bool = False
) -> dict[int, float]:
    """FID between real and generated features of each class (the classes both sets have)."""
    real, generated = as_features(real, "real features"), as_features(generated, "generated")
    real_labels, generated_labels = np.asarray(real_labels), np.asarray(generated_labels)
    values = {}
    for label in np.intersect1d(np.unique(real_labels), np.unique(generated_labels)):
        values[int(label)] = fid_from_features(
            real[real_labels == label], generated[generated_labels == label], force=force
        )
    if not values:
        raise MetricError("real and generated samples share no label")
    return values
