"""One evaluation of a model state: samples → features → metrics against cached real features, with
the protocol that makes the numbers comparable. Used by ``python -m experiments.evaluate`` and,
every ``eval_every_steps``, by the train loop (``config.evaluation.metrics``).

Metric names (``--metrics`` / ``config.evaluation.metrics``) and the result keys they produce:

- ``fid`` → ``fid``; ``kid`` → ``kid_mean``, ``kid_std``; ``is`` → ``is_mean``, ``is_std`` (the
  Inception score with InceptionV3, the classifier score with the domain classifier);
  ``pr`` → ``precision``, ``recall``; ``dc`` → ``density``, ``coverage``;
- conditional families only (``family.conditional`` true; samples are requested with balanced labels
  ``i % num_classes``): ``acc`` → ``accuracy`` (the feature net's prediction equals the requested
  label; meaningful with the domain classifier) and ``accuracy_confident`` (its probability of the
  requested label is at least 0.9), ``ifid`` → ``intra_fid`` (mean over classes) and
  ``intra_fid_per_class``.

The real data is the ``reference_split`` of the run's dataset (all of it). The *real-data floor*
(``floor``) is the same metrics for ``n_generated`` real images of the train split (a fixed subset,
``reference.FLOOR_SUBSET_SEED``) in place of samples: what a perfect model would score.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from experiments import provenance, rng, sampling, sharding
from experiments.errors import ConfigError
from experiments.evaluation import cache, features, metrics, reference

METRIC_NAMES = ("fid", "kid", "is", "pr", "dc", "acc", "ifid")
CONDITIONAL_METRICS = ("acc", "ifid")
DEFAULT_METRICS = ",".join(METRIC_NAMES)
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy")


@dataclass
class EvalOptions:
    """What an evaluation computes and how; also what a family's ``evaluation_metrics`` receives.

    Attributes:
        metrics: names from ``METRIC_NAMES`` and the family's ``evaluation_metric_names``.
        num_samples: generated samples (``n_generated``).
        reference_split: split of the run's dataset that the samples are compared with.
        feature_net: 'auto', 'classifier' or 'inception' (``features``).
        inception_weights: the ``.npz`` of the TF-FID InceptionV3 weights (inception only).
        cache_dir: where classifiers and real features are cached.
        seed: the samples' seed (in training: the run's seed; the key is also folded with the step).
        sample_batch_size: samples drawn per call of ``family.sample``.
        feature_batch_size: images per feature-net call (None = the net's default); results do not
            depend on it.
        floor: also compute the real-data floor.
        force_fid: compute FID even with fewer samples than twice the feature dimension.
        family_options: options of the family's own metrics (keys of its
            ``evaluation_options``, e.g. a VAE's ``iwae_k``); the family's defaults for the rest.
    """

    metrics: tuple[str, ...] = METRIC_NAMES
    num_samples: int = 10_000
    reference_split: str = "test"
    feature_net: str = "auto"
    inception_weights: str = ""
    cache_dir: Path = dataclasses.field(default_factory=cache.default_cache_dir)
    seed: int = 0
    sample_batch_size: int = 500
    feature_batch_size: int | None = None
    floor: bool = True
    force_fid: bool = False
    family_options: dict = dataclasses.field(default_factory=dict)


def metric_names(family=None) -> tuple[str, ...]:
    """Every metric name an evaluation of ``family`` knows: ``METRIC_NAMES`` and the family's own
    (``evaluation_metric_names``, e.g. a VAE's ``'nll'``)."""
    return METRIC_NAMES + tuple(getattr(family, "evaluation_metric_names", ()))


def parse_metrics(text: str, family=None) -> tuple[str, ...]:
    """``'fid,kid'`` → ``('fid', 'kid')``; '' → every name of ``metric_names(family)``; unknown
    names raise ``ConfigError``."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    valid = metric_names(family)
    if not names:
        return valid
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; expected names from {list(valid)}")
    return names


def parse_family_options(text: str, family) -> dict:
    """``'iwae_k=500,max_examples=1000'`` → a dict of the family's evaluation options, each value
    converted to the type of the family's default; unknown keys and bad values raise
    ``ConfigError``."""
    defaults = dict(getattr(family, "evaluation_options", {}) or {})
    options = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or key not in defaults:
            valid = ", ".join(sorted(defaults)) or "none for this family"
            raise ConfigError(
                f"--family_options: {item!r} is not KEY=VALUE with KEY one of: {valid}"
            )
        kind = type(defaults[key])
        try:
            options[key] = kind(value.strip())
        except ValueError as error:
            raise ConfigError(
                f"--family_options: {key}={value!r} is not a {kind.__name__}"
            ) from error
    return options


def git_commit() -> str:
    """``HEAD``'s hash, with ``-dirty`` when tracked files differ from it; 'unknown' when the
    source is not a git checkout (``provenance.git_state``)."""
    state = provenance.git_state()
    if state["commit"] is None:
        return "unknown"
    return state["commit"] + ("-dirty" if state["dirty"] else "")


def package_versions() -> dict[str, str]:
    return provenance.package_versions(PACKAGES)


def environment() -> dict:
    device = jax.devices()[0]
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "device_kind": device.device_kind,
        "device_platform": device.platform,
        "device_count": jax.device_count(),
    }


def metric_keys(names) -> list[str]:
    keys = {
        "fid": ["fid"],
        "kid": ["kid_mean", "kid_std"],
        "is": ["is_mean", "is_std"],
        "pr": ["precision", "recall"],
        "dc": ["density", "coverage"],
        "acc": ["accuracy", "accuracy_confident"],
        "ifid": ["intra_fid"],
    }
    return [key for name in names for key in keys[name]]


def compute_metrics(
    names,
    real: reference.RealFeatures,
    generated: features.Features,
    generated_labels: np.ndarray | None,
    *,
    seed: int,
    force_fid: bool = False,
) -> dict:
    """The metrics ``names`` of ``generated`` against ``real`` (features already extracted)."""
    results: dict = {}
    if "fid" in names:
        stats = metrics.gaussian_stats(generated.features)
        results["fid"] = metrics.fid(real.stats, stats, force=force_fid)
    if "kid" in names:
        results["kid_mean"], results["kid_std"] = metrics.kid(
            real.features.features, generated.features, seed=seed
        )
    if "is" in names:
        results["is_mean"], results["is_std"] = metrics.inception_score(generated.logits)
    radii = {}
    if "pr" in names or "dc" in names:
        ks = [k for name, k in (("pr", metrics.PR_K), ("dc", metrics.DC_K)) if name in names]
        radii = metrics.knn_radii_many(np.asarray(real.features.features, np.float64), tuple(ks))
    if "pr" in names:
        results["precision"], results["recall"] = metrics.precision_recall(
            real.features.features, generated.features, real_radii=radii[metrics.PR_K]
        )
    if "dc" in names:
        results["density"], results["coverage"] = metrics.density_coverage(
            real.features.features, generated.features, real_radii=radii[metrics.DC_K]
        )
    if "acc" in names:
        results["accuracy"] = metrics.label_accuracy(generated.logits, generated_labels)
        results["accuracy_confident"] = metrics.confident_accuracy(
            generated.logits, generated_labels
        )
    if "ifid" in names:
        if real.labels is None:
            raise ConfigError(f"intra-class FID needs labels; {real.dataset} has none")
        per_class = metrics.intra_class_fid(
            real.features.features,
            real.labels,
            generated.features,
            generated_labels,
            force=force_fid,
        )
        results["intra_fid"] = float(np.mean(list(per_class.values())))
        results["intra_fid_per_class"] = {str(k): v for k, v in per_class.items()}
    return results


def generated_features(
    family,
    state,
    feature_net: features.FeatureNet,
    key,
    options: EvalOptions,
    labels=None,
    samplers: dict | None = None,
    placement=None,
) -> features.Features:
    """Features of ``options.num_samples`` samples drawn by the sampling contract
    (``experiments.sampling``: sample ``i`` from ``fold_in(key, i)``), so they do not depend on
    ``options.sample_batch_size``. ``samplers``: a dict that keeps the compiled sampling function
    between calls (in training)."""
    samplers = {} if samplers is None else samplers
    if "sampler" not in samplers:
        samplers["sampler"] = jax.jit(sampling.sampler(family))
    batches = sampling.sample_batches(
        family,
        state,
        options.num_samples,
        key,
        labels=labels,
        batch_size=options.sample_batch_size,
        placement=placement,
        compiled=samplers["sampler"],
    )
    return features.Features.concatenate(
        [feature_net.extract_batch(images) for images, _ in batches]
    )


def evaluate(
    family,
    state,
    data_config,
    options: EvalOptions,
    key: jax.Array,
    *,
    eval_source=None,
    feature_net: features.FeatureNet | None = None,
    samplers: dict | None = None,
    family_key: jax.Array | None = None,
    placement=None,
    log=None,
) -> dict:
    """Evaluates ``state``: ``{'metrics': {...}, 'floor': {...} | None, 'protocol': {...}}``.

    ``key`` is the samples' key (``experiments.sampling``: sample ``i`` from ``fold_in(key, i)``).
    The family's own metrics (names in its ``evaluation_metric_names``, e.g. a VAE's ``'nll'``)
    are computed by its ``evaluation_metrics(state, eval_source, family_key, family_options)``
    only when ``options.metrics`` names one of them, and merged into ``metrics``
    (``family_key`` defaults to ``purpose_key(key, 'family')``). Sample-based image metrics are
    skipped, with the reason in ``protocol['skipped']``, for data that are not images and
    (``acc``, ``ifid``) for families that are not conditional.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    cache_dir = cache.resolve_cache_dir(options.cache_dir)
    if eval_source is None:
        from experiments import data

        eval_source = data.build_eval_source(data_config, options.reference_split)
    own = tuple(getattr(family, "evaluation_metric_names", ()))
    names = [name for name in options.metrics if name not in own]
    family_names = [name for name in options.metrics if name in own]
    skipped = {}
    is_images = len(eval_source.example_shape) == 3
    conditional = bool(getattr(family, "conditional", False))
    if not is_images:
        for name in names:
            skipped[name] = "the data are not images"
        names = []
    if not conditional:
        for name in CONDITIONAL_METRICS:
            if name in names:
                names.remove(name)
                skipped[name] = "the family is not conditional"
    protocol: dict = {
        "dataset": data_config.name,
        "reference_split": options.reference_split,
        "metrics": names + family_names,
        "seed": options.seed,
        "sample_batch_size": options.sample_batch_size,
        "samples": "sample i drawn with fold_in(key, i) (experiments.sampling); labels i % classes",
        "is_splits": metrics.IS_SPLITS,
        "kid_subsets": metrics.KID_NUM_SUBSETS,
        "kid_subset_size": metrics.KID_SUBSET_SIZE,
        "kid_kernel": "(x.y/d + 1)^3, unbiased MMD^2",
        "pr_k": metrics.PR_K,
        "dc_k": metrics.DC_K,
        "fid_covariance": "float64, ddof=1; sqrt via eigh (real by construction)",
    }
    results: dict = {}
    floor = None
    if names:
        if feature_net is None:
            feature_net = features.build_feature_net(
                options.feature_net,
                data_config.name,
                cache_dir=cache_dir,
                data_dir=data_config.get("dir", "") or "",
                inception_weights=options.inception_weights,
                batch_size=options.feature_batch_size,
                log=log,
            )
        protocol.update(feature_net.protocol())
        real = reference.real_features(feature_net, data_config, options.reference_split, cache_dir)
        labels = sampling.resolve_labels(family, options.num_samples, None)
        generated = generated_features(
            family, state, feature_net, key, options, labels, samplers, placement
        )
        metrics_key_seed = options.seed
        results = compute_metrics(
            names, real, generated, labels, seed=metrics_key_seed, force_fid=options.force_fid
        )
        protocol.update(
            n_real=real.n,
            n_generated=len(generated),
            reference_examples=real.indices,
        )
        if options.floor:
            train_split = data_config.get("train_split", "train")
            floor_real = reference.real_features(
                feature_net, data_config, train_split, cache_dir, num=options.num_samples
            )
            floor = compute_metrics(
                names,
                real,
                floor_real.features,
                floor_real.labels,
                seed=metrics_key_seed,
                force_fid=options.force_fid,
            )
            protocol["floor"] = {
                "split": train_split,
                "n": floor_real.n,
                "examples": floor_real.indices,
                "subset_seed": reference.FLOOR_SUBSET_SEED,
            }
    if family_names:
        if family_key is None:
            family_key = rng.purpose_key(key, "family")
        family_options = {**getattr(family, "evaluation_options", {}), **options.family_options}
        extra = family_metrics(family, state, eval_source, family_key, family_options, placement)
        results.update({k: float(v) if np.ndim(v) == 0 else v for k, v in extra.items()})
        protocol["family_options"] = family_options
    protocol["skipped"] = skipped
    protocol.update(environment())
    return {"metrics": results, "floor": floor, "protocol": protocol}


def family_metrics(family, state, eval_source, key, options, placement=None) -> dict:
    """``family.evaluation_metrics``, given the mesh ``placement`` (where ``state`` lives; default
    every device on the data axis) when it has a ``placement`` parameter."""
    function = family.evaluation_metrics
    if "placement" not in inspect.signature(function).parameters:
        return function(state, eval_source, key, options)
    if placement is None:
        placement = sharding.Placement(sharding.make_data_mesh())
    return function(state, eval_source, key, options, placement=placement)


def flat_report(report: dict) -> dict:
    """``metrics`` at the top level (the keys ``fid``, ``kid_mean`` ...), then ``floor`` and
    ``protocol``: the layout of ``eval/<step>.json``."""
    return {**report["metrics"], "floor": report["floor"], "protocol": report["protocol"]}


def floor_report(data_config, options: EvalOptions, *, feature_net=None, log=None) -> dict:
    """The real-data floor alone: ``options.num_samples`` train images in place of samples.

    Same layout as ``evaluate`` (its ``metrics`` are the floor's); conditional metrics use the
    images' true labels.
    """
    cache_dir = cache.resolve_cache_dir(options.cache_dir)
    if feature_net is None:
        feature_net = features.build_feature_net(
            options.feature_net,
            data_config.name,
            cache_dir=cache_dir,
            data_dir=data_config.get("dir", "") or "",
            inception_weights=options.inception_weights,
            batch_size=options.feature_batch_size,
            log=log,
        )
    real = reference.real_features(feature_net, data_config, options.reference_split, cache_dir)
    train_split = data_config.get("train_split", "train")
    floor_real = reference.real_features(
        feature_net, data_config, train_split, cache_dir, num=options.num_samples
    )
    names = [n for n in options.metrics if n not in CONDITIONAL_METRICS or real.labels is not None]
    results = compute_metrics(
        names,
        real,
        floor_real.features,
        floor_real.labels,
        seed=options.seed,
        force_fid=options.force_fid,
    )
    protocol = {
        "dataset": data_config.name,
        "reference_split": options.reference_split,
        "metrics": names,
        "n_real": real.n,
        "n_generated": floor_real.n,
        "generated": f"real {train_split} images ({floor_real.indices}), not samples",
        "seed": options.seed,
        "is_splits": metrics.IS_SPLITS,
        "kid_subsets": metrics.KID_NUM_SUBSETS,
        "kid_subset_size": metrics.KID_SUBSET_SIZE,
        "pr_k": metrics.PR_K,
        "dc_k": metrics.DC_K,
        **feature_net.protocol(),
        **environment(),
    }
    return {"metrics": results, "floor": None, "protocol": protocol}
