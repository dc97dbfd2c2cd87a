"""A family registered only by its module path trains through ``experiments.main`` (the family that
``docs/extending.md`` walks through: ``examples/gaussian.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, run_main
from experiments import data
from experiments.errors import ConfigError
from experiments.family import family_module


def test_a_family_named_by_module_path_trains_resumes_and_samples(tmp_path, monkeypatch):
    workdir = tmp_path / "gaussian"
    args = ["--config=examples/gaussian_ring2d.py", f"--workdir={workdir}"]
    result = run_main(*args, "--config.num_train_steps=200", "--config.eval_every_steps=100")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "eval/loss" in line] == [100, 200]

    from experiments import host_memory
    from experiments import workdir as workdir_lib

    def configure(value):
        raise AssertionError("loading a workdir configured the host's allocator")

    monkeypatch.setattr(host_memory, "configure", configure)
    experiment, state, step = workdir_lib.load_experiment(workdir)
    assert step == 200 and type(experiment.family).__module__ == "examples.gaussian"
    # Loading for sample/evaluate reads no train data and builds no train batcher.
    assert not {"train_source", "host_batcher", "batcher"} & set(vars(experiment))
    # The maximum-likelihood fit is the train split's mean and standard deviation.
    points = data.build_source(experiment.config.data, "train")[np.arange(20_000)]["x"]
    np.testing.assert_allclose(state.params["mean"], points.mean(0), atol=0.05)
    np.testing.assert_allclose(np.exp(state.params["log_std"]), points.std(0), rtol=0.03)

    again = run_main(*args, "--config.num_train_steps=200")  # finished: nothing to do
    assert again.returncode == 0 and "already finished" in again.stdout
    out = tmp_path / "samples.npz"
    sample = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.sample",
            f"--workdir={workdir}",
            "--num=5000",
            f"--out={out}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sample.returncode == 0, sample.stderr
    with np.load(out) as archive:
        samples = archive["samples"]
    assert samples.shape == (5000, 2)
    np.testing.assert_allclose(samples.std(0), points.std(0), rtol=0.05)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_family", "neither one of"),
        ("examples.no_such_module", "neither one of"),
        ("experiments.rng", "has no make"),
        ("", "not a module path"),
    ],
)
def test_a_family_that_cannot_be_found_is_a_config_error(name, message):
    with pytest.raises(ConfigError, match=message):
        family_module(name)
