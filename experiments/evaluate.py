"""Evaluates a checkpoint (FID, KID, scores, precision/recall; a family's own metrics such as a
VAE's likelihood bound).

Usage: python -m experiments.evaluate --workdir=DIR [--step=S | --best] [--num_samples=10000]
       [--metrics=fid,kid,is,pr,dc,acc,ifid,...] [--reference_split=test]
       [--feature_net=auto|classifier|classifier_local|inception] [--inception_weights=FILE.npz]
       [--seed=0] [--nofloor] [--family_options=KEY=VALUE,...] [--output=FILE.json]
   or: python -m experiments.evaluate --dataset=NAME [--data_dir=DIR] [--output=FILE.json]

``--metrics`` computes only what it names; without it, every metric the model has: the sample
metrics and the family's own (a VAE's ``nll``: the IWAE estimate of the test NLL, which takes
minutes at k = 5000). ``--family_options`` sets the family's evaluation options (a VAE:
``iwae_k`` (default ``model.iwae_k_eval``), ``max_examples`` (N test examples evenly spread over
the split; 0 = all), ``batch_size``). The samples are those ``experiments.sample --seed S --num N``
writes for the same checkpoint (``experiments.sampling``).

Writes ``DIR/eval/<step>.json`` (``DIR/eval/best_<step>.json`` with ``--best``): the metric keys at
the top level (``fid``, ``kid_mean``, ``kid_std``, ``is_mean``, ``is_std``, ``precision``,
``recall``, ``density``, ``coverage``; ``accuracy``, ``intra_fid`` for conditional families; and
whatever the family's ``evaluation_metrics`` adds), ``floor`` (the same metrics for real train
images: the best any model can do under this protocol) and ``protocol``. See
``experiments.evaluation.evaluator`` for the metric names and docs/evaluation.md for the protocol.

Without ``--workdir``, ``--dataset NAME [--data_dir DIR]`` computes the real-data floor alone and
prints it (or writes ``--output``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Experiment directory to evaluate.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", lower_bound=0)
_BEST = flags.DEFINE_bool("best", False, "Evaluate the checkpoint kept in checkpoints_best/.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 10_000, "Generated samples.", lower_bound=1)
_METRICS = flags.DEFINE_string(
    "metrics",
    "",
    "Comma-separated metric names: fid,kid,is,pr,dc,acc,ifid and the family's own (a VAE: nll); "
    "'' = all of them.",
)
_REFERENCE_SPLIT = flags.DEFINE_string(
    "reference_split", "", "Real split to compare with ('' = the config's data.eval_split)."
)
_FEATURE_NET = flags.DEFINE_string(
    "feature_net",
    "",
    "auto | classifier | classifier_local | inception ('' = config.evaluation.feature_net).",
)
_INCEPTION_WEIGHTS = flags.DEFINE_string(
    "inception_weights", "", "The .npz of the TF-FID InceptionV3 weights."
)
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", "", "Evaluation cache ('' = $GAN_VAE_JAX_CACHE or ~/.cache/gan_vae_jax)."
)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the samples (and of KID's subsets).", lower_bound=0, upper_bound=2**63 - 1
)
_SAMPLE_BATCH_SIZE = flags.DEFINE_integer(
    "sample_batch_size", 500, "Samples per sample() call.", lower_bound=1
)
_FEATURE_BATCH_SIZE = flags.DEFINE_integer(
    "feature_batch_size", 0, "Images per feature-net call (0 = its default).", lower_bound=0
)
_FAMILY_OPTIONS = flags.DEFINE_string(
    "family_options",
    "",
    "The family's evaluation options, KEY=VALUE,... (a VAE: iwae_k, max_examples, batch_size).",
)
_FLOOR = flags.DEFINE_bool("floor", True, "Also compute the real-data floor.")
_FORCE_FID = flags.DEFINE_bool(
    "force_fid", False, "Compute FID with fewer samples than twice the feature dimension."
)
_OUTPUT = flags.DEFINE_string("output", "", "Where to write the JSON (default: DIR/eval/...).")
_DATASET = flags.DEFINE_string(
    "dataset", "", "Without --workdir: the dataset whose floor to compute."
)
_DATA_DIR = flags.DEFINE_string("data_dir", "", "With --dataset: its data.dir.")


def evaluation_settings(config):
    """``config.evaluation``, or its defaults for workdirs made before it existed."""
    from configs import base

    settings = base.get_evaluation_config()
    if config is not None and config.get("evaluation") is not None:
        settings.update(config.evaluation.to_dict())
    return settings


def make_options(settings, reference_split: str, family=None):
    from experiments.evaluation import cache, evaluator

    return evaluator.EvalOptions(
        metrics=evaluator.parse_metrics(_METRICS.value, family),
        num_samples=_NUM_SAMPLES.value,
        reference_split=reference_split,
        feature_net=_FEATURE_NET.value or settings.feature_net,
        inception_weights=_INCEPTION_WEIGHTS.value or settings.inception_weights,
        cache_dir=cache.resolve_cache_dir(_CACHE_DIR.value or settings.cache_dir),
        seed=_SEED.value,
        sample_batch_size=_SAMPLE_BATCH_SIZE.value,
        feature_batch_size=_FEATURE_BATCH_SIZE.value or None,
        floor=_FLOOR.value,
        force_fid=_FORCE_FID.value,
        family_options=evaluator.parse_family_options(_FAMILY_OPTIONS.value, family),
    )


def load_best(workdir: Path):
    from experiments import train
    from experiments import workdir as workdir_lib
    from experiments.checkpoint import CheckpointError
    from experiments.evaluation import best

    config = workdir_lib.load_config(workdir)
    directory = workdir / best.BEST_DIR
    if not directory.is_dir():
        raise CheckpointError(f"{workdir} has no {best.BEST_DIR}/ (config.evaluation.best_metric)")
    settings = evaluation_settings(config)
    keeper = best.BestCheckpointer(directory, settings.best_metric, settings.best_mode)
    try:
        kept = keeper.best()
        if kept is None:
            raise CheckpointError(f"{directory} holds no checkpoint")
        experiment = train.Experiment(config, workdir, training=False)
        state = keeper.restore(kept[0], experiment.abstract_state())
    finally:
        keeper.close()
    return experiment, state, kept[0]


def evaluate_workdir(workdir: Path) -> tuple[dict, Path]:
    from experiments import rng, sampling
    from experiments import workdir as workdir_lib
    from experiments.evaluation import evaluator

    if _BEST.value:
        experiment, state, step = load_best(workdir)
    else:
        experiment, state, step = workdir_lib.load_experiment(workdir, _STEP.value)
    config = experiment.config
    reference_split = _REFERENCE_SPLIT.value or config.data.eval_split
    options = make_options(evaluation_settings(config), reference_split, experiment.family)
    family_key = rng.purpose_key(rng.purpose_key(rng.root_key(options.seed), "evaluate"), "family")
    eval_source = experiment.eval_source if reference_split == config.data.eval_split else None
    report = evaluator.evaluate(
        experiment.family,
        state,
        config.data,
        options,
        sampling.sample_key(options.seed),
        eval_source=eval_source,
        family_key=family_key,
        placement=experiment.placement,
    )
    report["protocol"].update(
        workdir=str(workdir.absolute()),
        step=step,
        checkpoint="checkpoints_best" if _BEST.value else "checkpoints",
        in_training=False,
        sample_key="purpose_key(root_key(seed), 'samples')",
        command=" ".join(["python -m experiments.evaluate", *sys.argv[1:]]),
    )
    name = f"best_{step}.json" if _BEST.value else f"{step}.json"
    output = Path(_OUTPUT.value) if _OUTPUT.value else workdir / "eval" / name
    return evaluator.flat_report(report), output


def evaluate_floor() -> dict:
    from configs import base
    from experiments import data
    from experiments.evaluation import evaluator

    data_config = base.get_data_config(name=_DATASET.value, dir=_DATA_DIR.value)
    options = make_options(evaluation_settings(None), _REFERENCE_SPLIT.value or "test")
    data.check_split(data_config, options.reference_split)  # before the feature net is built
    report = evaluator.floor_report(data_config, options)
    report["protocol"]["command"] = " ".join(["python -m experiments.evaluate", *sys.argv[1:]])
    return evaluator.flat_report(report)


def check_flags() -> None:
    """Raises cli.UsageError for a flag value that cannot work, before anything is loaded (the
    reference split is checked once the dataset is known)."""
    if _WORKDIR.value and _DATASET.value:
        raise cli.UsageError("--workdir and --dataset exclude each other")
    if _DATA_DIR.value and not _DATASET.value:
        raise cli.UsageError(
            "--data_dir goes with --dataset (a workdir's data.dir is in its config)"
        )
    if _BEST.value and _STEP.value is not None:
        raise cli.UsageError("--step and --best exclude each other")
    if _BEST.value and not _WORKDIR.value:
        raise cli.UsageError("--best needs --workdir")
    weights = _INCEPTION_WEIGHTS.value
    if weights and not Path(weights).expanduser().is_file():
        raise cli.UsageError(f"--inception_weights={weights}: no such file")
    if _CACHE_DIR.value:
        cli.check_dir(Path(_CACHE_DIR.value).expanduser(), "--cache_dir", writable=False)
    if _OUTPUT.value:
        cli.check_output_file(_OUTPUT.value, "--output")
    from experiments import data  # these import jax
    from experiments.evaluation import features

    if _FEATURE_NET.value and _FEATURE_NET.value not in features.FEATURE_NET_NAMES:
        raise cli.UsageError(
            f"--feature_net={_FEATURE_NET.value}: expected one of {list(features.FEATURE_NET_NAMES)}"
        )
    if _DATASET.value:
        try:
            data.check_name(_DATASET.value)
        except data.DataError as error:
            raise cli.UsageError(f"--dataset={_DATASET.value}: {error}") from error


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _WORKDIR.value and not _DATASET.value:
        cli.fail("missing --workdir=DIR (or --dataset=NAME for the real-data floor alone)")
    cli.quiet_library_logs()
    try:
        check_flags()
    except cli.UsageError as error:
        cli.fail(str(error))
    from experiments import data
    from experiments.checkpoint import CheckpointError
    from experiments.errors import ConfigError

    try:
        if _WORKDIR.value:
            report, output = evaluate_workdir(Path(_WORKDIR.value))
        else:
            report, output = evaluate_floor(), Path(_OUTPUT.value) if _OUTPUT.value else None
    except (ConfigError, data.DataError, CheckpointError) as error:
        cli.fail(str(error), status=1)
    text = json.dumps(report, indent=2, sort_keys=True)
    if output is None:
        print(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
    except OSError as error:
        cli.fail(f"cannot write {output}: {error}", status=1)
    shown = {k: v for k, v in report.items() if isinstance(v, float)}
    print(json.dumps({"written": str(output), **shown}, indent=2))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
