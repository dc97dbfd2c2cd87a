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
from experiments import benchmark, layers, train

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
    "products_ms",
    "products_fraction",
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
    products_fraction = report["products_ms"] / report["median_step_ms"]
    assert report["products_fraction"] == pytest.approx(products_fraction, rel=2e-3, abs=1e-4)
    # The tiny DCGAN step has dcgan28's 30 products (tests below count the rule on small cases).
    assert report["products"] == 30

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


W = jax.numpy.full((4, 4), 0.5)
X = jax.numpy.ones((2, 4))
KERNEL = jax.numpy.full((4, 4, 1, 3), 0.1)
IMAGES = jax.numpy.ones((2, 8, 8, 1))


def _unused_product(x):
    _ = x @ W
    return x + 1


def _scanned(x):
    return jax.lax.scan(lambda carry, _: (jax.numpy.tanh(carry @ W), None), x, length=3)[0]


def _nested_jit(x):
    return jax.jit(lambda a: a @ W)(x) @ W


def _kernel_gradient(w):
    return jax.grad(lambda w: (X @ w).sum())(w)


def _downconv_kernel_gradient(kernel):
    return jax.grad(lambda k: layers.downconv(IMAGES, k).sum())(kernel)


@pytest.mark.parametrize(
    "function, argument, expected",
    [
        (_unused_product, X, []),  # XLA drops it; so does the count
        (_scanned, X, ["dot_general"] * 3),  # once per iteration
        (_nested_jit, X, ["dot_general"] * 2),
        (_kernel_gradient, W, ["dot_general"]),  # the forward product's value is not used
        # the custom VJP's pullback takes jax.vjp of the forward convolution: only its
        # transpose (the kernel gradient) is used
        (_downconv_kernel_gradient, KERNEL, ["conv_general_dilated"]),
    ],
)
def test_live_products_are_the_products_whose_results_are_used(function, argument, expected):
    equations = benchmark.live_products(jax.make_jaxpr(function)(argument).jaxpr)
    assert [equation.primitive.name for equation in equations] == expected


def test_products_ms_times_each_product_of_a_function():
    milliseconds, count = benchmark.products_ms(_scanned, (X,), None, runs=3)
    assert count == 3 and milliseconds > 0
