"""Features of real data, computed once per (dataset, split, examples, feature network) and cached.

A cache entry is ``<cache_dir>/reference/<dataset>-<split>-<n>-<images sha>-<net>-<net sha>.npz``
holding the float32 features and logits, the labels (if any), and the float64 mean and covariance.
The key includes the sha256 of the image bytes themselves, so other files under the same dataset
name (or another binarisation) never reuse a stale entry, and the feature net's weight hash, so
retrained or other weights never do either.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments import batched, data
from experiments.evaluation import metrics
from experiments.evaluation.features import FeatureNet, Features

REFERENCE_DIR = "reference"
# Which train examples form the real-data floor: a fixed subset, the same for every run.
FLOOR_SUBSET_SEED = 0
IMAGE_BATCH = 1000


@dataclass
class RealFeatures:
    """Features of real examples and where they came from."""

    features: Features
    labels: np.ndarray | None
    stats: metrics.GaussianStats
    dataset: str
    split: str
    indices: str  # 'all' or a description of the subset
    cache_file: Path

    @property
    def n(self) -> int:
        return len(self.features)


def subset_indices(size: int, num: int | None, seed: int = FLOOR_SUBSET_SEED) -> np.ndarray:
    """All indices in order when ``num`` is None or covers the split; else ``num`` distinct indices
    drawn with ``np.random.default_rng(seed)``, sorted."""
    if num is None or num >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, num, replace=False))


def images_digest(source: data.Source, indices: np.ndarray) -> tuple[str, bool]:
    """sha256 of the selected images' float32 bytes, and whether the source has labels."""
    digest = hashlib.sha256()
    has_labels = False
    for start in range(0, len(indices), IMAGE_BATCH):
        batch = source[indices[start : start + IMAGE_BATCH]]
        digest.update(np.ascontiguousarray(batch["x"], np.float32).tobytes())
        has_labels = "label" in batch
    return digest.hexdigest(), has_labels


def real_features(
    feature_net: FeatureNet,
    data_config,
    split: str,
    cache_dir: str | os.PathLike,
    *,
    num: int | None = None,
    subset_seed: int = FLOOR_SUBSET_SEED,
) -> RealFeatures:
    """Features of ``split`` of the dataset ``data_config`` names (``num`` examples, see
    ``subset_indices``), from the cache or computed and cached now.

    The split is read with ``experiments.data.build_eval_source``: with ``binarize='dynamic'`` it is
    the fixed binarisation every eval uses.
    """
    source = data.build_eval_source(data_config, split)
    indices = subset_indices(len(source), num, subset_seed)
    description = (
        "all" if len(indices) == len(source) else f"{len(indices)}of{len(source)}s{subset_seed}"
    )
    digest, has_labels = images_digest(source, indices)
    name = (
        f"{data_config.name.replace(':', '_').replace('/', '_')}-{split}-{description}-"
        f"{digest[:12]}-{feature_net.name}-{feature_net.weights_hash[:12]}.npz"
    )
    path = Path(cache_dir) / REFERENCE_DIR / name
    if path.exists():
        with np.load(path) as archive:
            features = Features(archive["features"], archive["logits"])
            labels = archive["labels"] if "labels" in archive.files else None
            stats = metrics.GaussianStats(archive["mu"], archive["sigma"], int(archive["n"]))
        return RealFeatures(features, labels, stats, data_config.name, split, description, path)

    def one_batch(batch):
        extracted = feature_net.extract_batch(batch["x"])
        outputs = {"features": extracted.features, "logits": extracted.logits}
        if has_labels:
            outputs["label"] = batch["label"]
        return outputs

    read = lambda positions: source[indices[positions]]
    outputs = batched.collect(batched.batches(len(indices), IMAGE_BATCH, read), one_batch)
    features = Features(outputs["features"], outputs["logits"])
    label_array = outputs["label"].astype(np.int32) if has_labels else None
    stats = metrics.gaussian_stats(features.features)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(
        features=features.features,
        logits=features.logits,
        mu=stats.mu,
        sigma=stats.sigma,
        n=np.int64(stats.n),
    )
    if label_array is not None:
        arrays["labels"] = label_array
    temporary = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)
    return RealFeatures(features, label_array, stats, data_config.name, split, description, path)
