"""``python -m experiments.benchmark`` on a tiny DCGAN for 3 steps: a table, then one JSON line with
every promised field; its parameter count is the sum of the parameter leaves. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT
from experiments import benchmark, train

REQUIRED_KEYS = (
    "median_step_ms",
    "compile_s",
    "images_per_s",
    "flops_per_step",
    "fraction_of_peak",
    "params",
    "peak_memory_mb",
    "data_ms",
    "data_fraction",
    "step_with_data_ms",
    "page_faults_per_step",
    "step_system_ms",
)

TINY_CONFIG = textwrap.dedent(
    """
    from configs.bench import dcgan28


    def get_config():
        config = dcgan28.get_config()
        config.batch_size = 8
        config.eval_batch_size = 8
        config.model.generator.features = (8, 4)
        config.model.discriminator.features = (4, 8)
        config.data.train_size = 64
        config.data.test_size = 16
        return config
    """
)


def load_config(path):
    from experiments.cli import load_config_file

    return load_config_file(str(path))


def test_benchmark_prints_table_then_json(tmp_path):
    config_path = tmp_path / "tiny_dcgan.py"
    config_path.write_text(TINY_CONFIG)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.benchmark",
            "--config",
            str(config_path),
            "--steps",
            "3",
            "--warmup",
            "1",
            "--data_steps",
            "3",
            "--peak_size",
            "128",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "median step" in result.stdout and len(lines) > 5
    report = json.loads(lines[-1])
    for key in REQUIRED_KEYS:
        assert key in report, key
        assert np.isfinite(report[key]) and report[key] >= 0, (key, report[key])
    assert report["steps"] == 3
    assert report["recompiles"] == 0
    assert report["flops_per_step"] > 0 and report["peak_memory_mb"] > 0
    fraction = report["data_ms"] / report["median_step_ms"]
    assert report["data_fraction"] == pytest.approx(fraction, rel=2e-3, abs=1e-4)

    config = load_config(config_path)
    with tempfile.TemporaryDirectory() as workdir:
        experiment = train.Experiment(config, workdir)
    state = jax.eval_shape(experiment.initial_state)
    expected = sum(
        leaf.size
        for network in (state.generator, state.discriminator)
        for leaf in jax.tree.leaves(network.params)
    )
    assert report["params"] == expected


def test_count_params_counts_only_trainable_parameters():
    """Leaves under a ``params`` field or key: not optimiser moments, EMA copies or BN statistics."""
    params = {"Dense_0": {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}}
    state = {
        "params": params,
        "opt_state": ({"mu": params, "nu": params},),
        "ema_params": params,
        "batch_stats": {"BatchNorm_0": {"mean": np.zeros(4)}},
        "generator": {"params": {"BatchNorm_0": {"scale": np.ones(5), "bias": np.zeros(5)}}},
    }
    assert benchmark.count_params(state) == 16 + 10


@pytest.mark.parametrize(
    "name, expected",
    [("dcgan28", 910_530), ("vae_mlp", 815_824)],
)
def test_reference_configs_have_the_torch_reference_parameter_counts(name, expected, tmp_path):
    """The totals ``../shared/bench/torch_reference.py`` prints for the same models."""
    config = load_config(REPO_ROOT / "configs" / "bench" / f"{name}.py")
    experiment = train.Experiment(config, tmp_path)
    assert benchmark.count_params(jax.eval_shape(experiment.initial_state)) == expected


def test_lowered_flops_count_a_matmul_exactly():
    """flops_per_step comes from the step lowered for the CPU (a GPU's compiled count omits cuDNN
    convolutions, and its lowering has no cost analysis)."""
    a, b = jax.numpy.ones((8, 16)), jax.numpy.ones((16, 4))
    assert benchmark.lowered_flops(jax.numpy.matmul, a, b) == 2 * 8 * 16 * 4
