"""Sample-quality metrics inside the train loop, every ``eval_every_steps``.

Enabled by ``config.evaluation.metrics`` (comma-separated names of ``evaluator.METRIC_NAMES``; ''
= off). ``config.evaluation.num_samples`` samples (fewer than the command's default 10 000 is fine:
FID's bias grows as the count shrinks, so compare in-training numbers only with each other) are
drawn by the sampling contract (``experiments.sampling``) with the key
``purpose_key(fold_in(purpose_key(root, 'eval_metrics'), step), 'samples')``. The scalars are logged as
``eval/<key>``; the full report with its protocol (which says how many samples) goes to
``WORKDIR/eval/in_training/<step>.json``. The feature net and the real features are built on the
first eval and reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax

from experiments import rng
from experiments.evaluation import cache, evaluator, features

IN_TRAINING_DIR = Path("eval") / "in_training"


def enabled(config) -> bool:
    evaluation = config.get("evaluation")
    return evaluation is not None and bool(evaluation.get("metrics", ""))


def options_from_config(config, family=None) -> evaluator.EvalOptions:
    """In-training ``EvalOptions`` from ``config.evaluation`` (see ``configs/base.py``)."""
    evaluation = config.evaluation
    return evaluator.EvalOptions(
        metrics=evaluator.parse_metrics(evaluation.metrics, family),
        num_samples=evaluation.num_samples,
        reference_split=evaluation.reference_split or config.data.eval_split,
        feature_net=evaluation.feature_net,
        inception_weights=evaluation.inception_weights,
        cache_dir=cache.resolve_cache_dir(evaluation.cache_dir),
        seed=config.seed,
        sample_batch_size=evaluation.sample_batch_size,
        feature_batch_size=evaluation.feature_batch_size or None,
        floor=False,
        force_fid=evaluation.force_fid,
    )


class InTrainingEvaluator:
    """Holds the options and, after the first eval, the feature net of a run."""

    def __init__(self, config, family, workdir: Path, root, placement=None):
        self.config, self.family, self.workdir, self.root = config, family, Path(workdir), root
        self.placement = placement  # the run's mesh (sampling is split over it)
        self.options = options_from_config(config, family)
        self.feature_net: features.FeatureNet | None = None
        self.samplers: dict = {}  # compiled sampling functions, kept between evals

    def __call__(self, state, step: int, eval_source) -> dict[str, float]:
        key = rng.purpose_key(rng.step_key(self.root, "eval_metrics", step), "samples")
        if self.feature_net is None and self.options.metrics:
            self.feature_net = features.build_feature_net(
                self.options.feature_net,
                self.config.data.name,
                cache_dir=self.options.cache_dir,
                data_dir=self.config.data.get("dir", "") or "",
                inception_weights=self.options.inception_weights,
                batch_size=self.options.feature_batch_size,
            )
        source = (
            eval_source if self.options.reference_split == self.config.data.eval_split else None
        )
        report = evaluator.evaluate(
            self.family,
            state,
            self.config.data,
            self.options,
            key,
            eval_source=source,
            feature_net=self.feature_net,
            samplers=self.samplers,
            placement=self.placement,
        )
        report["protocol"].update(
            step=step,
            in_training=True,
            sample_key="purpose_key(fold_in(purpose_key(root_key(seed), 'eval_metrics'), step), 'samples')",
        )
        directory = self.workdir / IN_TRAINING_DIR
        directory.mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:  # one writer of the run's files
            (directory / f"{step}.json").write_text(
                json.dumps(evaluator.flat_report(report), indent=2, sort_keys=True)
            )
        return {
            key: value
            for key, value in report["metrics"].items()
            if isinstance(value, (int, float))
        }
