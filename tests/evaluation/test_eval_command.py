"""Evaluation end to end: the evaluator on a model, in-training metrics with the best checkpoint,
and the ``experiments.evaluate`` command. The feature net is a randomly initialised classifier
(injected, or planted in a temporary cache), so nothing trains the real one."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import ClassVar

import jax
import numpy as np
import pytest
from test_eval_features import random_classifier

from configs import base
from conftest import REPO_ROOT, run_main, shared_data_dir
from experiments import rng, train, writers
from experiments.errors import ConfigError
from experiments.evaluation import (
    best,
    classifier,
    evaluator,
    features,
    in_training,
)
from experiments.family import make_family
from test_train import assert_trees_equal, restore_final, tiny_config

EVAL_OVERRIDES = {
    "data.image_size": 28,
    "model.image_size": 28,
    "evaluation.metrics": "fid,kid,is,pr,dc",
    "evaluation.num_samples": 120,
    "evaluation.sample_batch_size": 50,
}


def eval_config(tmp_path, **overrides):
    return tiny_config(**{**EVAL_OVERRIDES, "evaluation.cache_dir": str(tmp_path), **overrides})


@pytest.fixture(scope="module")
def feature_net():
    return features.feature_net_from_classifier(random_classifier(), batch_size=64)


def test_evaluator_report_is_complete_and_reproducible(tmp_path, feature_net):
    config = eval_config(tmp_path)
    family = make_family(config)
    experiment = train.Experiment(config, tmp_path / "run")
    state = experiment.initial_state()
    options = evaluator.EvalOptions(num_samples=120, sample_batch_size=50, cache_dir=tmp_path)
    key = rng.purpose_key(rng.root_key(0), "evaluate")
    report = evaluator.evaluate(family, state, config.data, options, key, feature_net=feature_net)
    flat = evaluator.flat_report(report)
    for name in ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"):
        assert np.isfinite(flat[name]), name
    assert {"density", "coverage"} <= set(flat)
    protocol = flat["protocol"]
    assert protocol["skipped"] == {
        "acc": "the family is not conditional",
        "ifid": "the family is not conditional",
    }
    for field in (
        "dataset",
        "reference_split",
        "n_real",
        "n_generated",
        "feature_net",
        "feature_net_hash",
        "resizer",
        "is_splits",
        "seed",
        "git_commit",
        "packages",
        "device_kind",
        "device_count",
    ):
        assert field in protocol, field
    assert protocol["n_generated"] == 120 and protocol["n_real"] == 2000
    assert protocol["is_splits"] == 10 and protocol["dataset"] == "shapes"
    assert protocol["floor"]["n"] == 120 and protocol["floor"]["split"] == "train"
    assert flat["floor"]["fid"] < flat["fid"]  # real images beat an untrained generator
    again = evaluator.evaluate(family, state, config.data, options, key, feature_net=feature_net)
    assert again["metrics"] == report["metrics"]


def test_family_hook_and_non_image_data(tmp_path, feature_net):
    config = eval_config(tmp_path)

    calls = []

    class WithHook:
        evaluation_metric_names = ("hook",)
        evaluation_options: ClassVar[dict] = {"scale": 1.0, "count": 3}

        def __init__(self, family):
            self.family = family

        def __getattr__(self, name):
            return getattr(self.family, name)

        def evaluation_metrics(self, state, eval_source, key, options):
            calls.append(options)
            return {"nll": np.float32(1.5 * options["scale"]), "num_eval": len(eval_source)}

    family = WithHook(make_family(config))
    options = evaluator.EvalOptions(
        metrics=("fid", "hook"),
        num_samples=60,
        sample_batch_size=60,
        cache_dir=tmp_path,
        floor=False,
        family_options=evaluator.parse_family_options("scale=2", family),
    )
    state = train.Experiment(config, tmp_path / "run").initial_state()
    report = evaluator.evaluate(
        family, state, config.data, options, jax.random.key(0), feature_net=feature_net
    )
    assert report["metrics"]["nll"] == 3.0 and report["metrics"]["num_eval"] == 2000
    assert calls == [{"scale": 2.0, "count": 3}]  # the family's defaults, then the options given
    assert "fid" in report["metrics"] and report["floor"] is None
    # --metrics means what it says: without the family's name its metrics are not computed.
    only_fid = dataclasses.replace(options, metrics=("fid",))
    report = evaluator.evaluate(
        family, state, config.data, only_fid, jax.random.key(0), feature_net=feature_net
    )
    assert "nll" not in report["metrics"] and len(calls) == 1
    toy = base.get_data_config(name="ring2d", test_size=100)
    report = evaluator.evaluate(family, state, toy, options, jax.random.key(0))
    assert set(report["metrics"]) == {"nll", "num_eval"}
    assert report["protocol"]["skipped"] == {"fid": "the data are not images"}
    assert evaluator.parse_metrics("", family) == (*evaluator.METRIC_NAMES, "hook")
    for bad in ("scale", "size=2", "count=many"):
        with pytest.raises(ConfigError, match="--family_options"):
            evaluator.parse_family_options(bad, family)


def test_parse_metrics():
    assert evaluator.parse_metrics("fid, kid,") == ("fid", "kid")
    with pytest.raises(evaluator.ConfigError, match="unknown metric"):
        evaluator.parse_metrics("fid,lpips")


@pytest.fixture(scope="module")
def run_with_metrics(tmp_path_factory):
    """12 tiny DCGAN steps with FID etc. at steps 6 and 12 and the best checkpoint by FID."""
    cache_dir = tmp_path_factory.mktemp("cache")
    workdir = tmp_path_factory.mktemp("with_metrics")
    config = eval_config(cache_dir, **{"evaluation.best_metric": "fid"})
    experiment = train.Experiment(config, workdir)
    experiment.sample_metrics.feature_net = features.feature_net_from_classifier(
        random_classifier(), batch_size=64
    )
    assert experiment.run() == 0
    return workdir, config, cache_dir


def test_in_training_metrics_and_best_checkpoint(run_with_metrics):
    workdir, _, _ = run_with_metrics
    records = [r for r in writers.read_metrics(workdir) if "eval/fid" in r]
    assert [r["step"] for r in records] == [6, 12]
    for record in records:
        assert {"eval/kid_mean", "eval/is_mean", "eval/precision", "eval/coverage"} <= set(record)
        assert "eval/d_accuracy" in record  # the family's own eval metrics are still there
        saved = json.loads(
            (workdir / "eval" / "in_training" / f"{record['step']}.json").read_text()
        )
        assert saved["fid"] == record["eval/fid"]
        assert saved["protocol"]["n_generated"] == 120 and saved["protocol"]["in_training"]
    best_record = min(records, key=lambda r: r["eval/fid"])
    kept = sorted(p.name for p in (workdir / best.BEST_DIR).iterdir() if p.name.isdigit())
    assert kept == [str(best_record["step"])]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["12", "4", "8"]
    keeper = best.BestCheckpointer(workdir / best.BEST_DIR, "fid", "min")
    assert keeper.best() == (best_record["step"], pytest.approx(best_record["eval/fid"]))
    keeper.close()


def test_metrics_do_not_change_training(run_with_metrics, tmp_path):
    workdir, config, _ = run_with_metrics
    plain = tiny_config(**{"data.image_size": 28, "model.image_size": 28})
    assert train.Experiment(plain, tmp_path).run() == 0
    assert_trees_equal(restore_final(tmp_path, plain)[1], restore_final(workdir, config)[1])


def test_resumed_run_keeps_the_same_best(run_with_metrics, tmp_path):
    workdir, config, cache_dir = run_with_metrics
    net = features.feature_net_from_classifier(random_classifier(), batch_size=64)
    first = train.Experiment(
        eval_config(cache_dir, num_train_steps=6, **{"evaluation.best_metric": "fid"}), tmp_path
    )
    first.sample_metrics.feature_net = net
    assert first.run() == 0
    second = train.Experiment(config, tmp_path)
    second.sample_metrics.feature_net = net
    assert second.run() == 0
    straight = {r["step"]: r["eval/fid"] for r in writers.read_metrics(workdir) if "eval/fid" in r}
    resumed = {r["step"]: r["eval/fid"] for r in writers.read_metrics(tmp_path) if "eval/fid" in r}
    assert resumed == straight
    kept = [p.name for p in (tmp_path / best.BEST_DIR).iterdir() if p.name.isdigit()]
    assert kept == [p.name for p in (workdir / best.BEST_DIR).iterdir() if p.name.isdigit()]


def test_best_metric_must_be_computed(tmp_path):
    config = tiny_config(**{"evaluation.best_metric": "fid", "num_train_steps": 6})
    status = train.main(config, str(tmp_path))
    assert status == 1


def test_in_training_options_come_from_the_config(tmp_path):
    config = eval_config(tmp_path, **{"evaluation.reference_split": ""})
    options = in_training.options_from_config(config)
    assert options.metrics == ("fid", "kid", "is", "pr", "dc")
    assert options.reference_split == "test" and options.num_samples == 120
    assert options.floor is False and options.seed == config.seed
    assert options.family_options == {}


@pytest.mark.slow
@pytest.mark.shared_data
def test_evaluate_command_on_a_mnist_checkpoint(tmp_path):
    shared_data_dir("mnist")
    cache_dir = tmp_path / "cache"
    workdir = tmp_path / "run"
    result = run_main(
        "--config=configs/dcgan_mnist.py",
        f"--workdir={workdir}",
        "--config.num_train_steps=2",
        "--config.eval_every_steps=0",
        "--config.model.generator.features=(16,8)",
        "--config.model.discriminator.features=(8,16)",
        f"--config.evaluation.cache_dir={cache_dir}",  # its last-step FID: the shipped net
    )
    assert result.returncode == 0, result.stderr
    command = [
        sys.executable,
        "-m",
        "experiments.evaluate",
        f"--workdir={workdir}",
        "--num_samples=300",
        "--metrics=fid,kid,is,pr",
        f"--cache_dir={cache_dir}",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads((workdir / "eval" / "2.json").read_text())
    for key in ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"):
        assert np.isfinite(report[key]), key
    protocol = report["protocol"]
    assert protocol["feature_net"] == "classifier_mnist"
    assert protocol["feature_net_hash"] == classifier.SHIPPED_SHA256["mnist"]
    assert protocol["classifier_weights"] == "shipped with the package"
    assert not (cache_dir / "classifiers").exists()  # nothing trained
    assert protocol["n_real"] == 10_000 and protocol["n_generated"] == 300
    assert protocol["reference_split"] == "test" and protocol["step"] == 2
    assert report["floor"]["fid"] < report["fid"]
    # Too few samples for a 128-d FID: refused with one line, unless forced.
    done = subprocess.run(
        [*command, "--num_samples=100"], cwd=REPO_ROOT, capture_output=True, text=True, env=env
    )
    assert done.returncode == 1 and "fewer than 2 x 128" in done.stderr
    assert "Traceback" not in done.stderr
