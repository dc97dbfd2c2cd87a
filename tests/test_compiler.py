"""``config.cpu_convolutions``: 'eigen' compiles the train step with no YNNPACK convolution (Eigen's
multi-threaded ones), 'default' leaves XLA's choice, anything else is a one-line config error."""

from __future__ import annotations

import re
import tempfile

import jax
import ml_collections
import pytest

from configs.bench import dcgan28
from experiments import compiler, train
from experiments.errors import ConfigError


def library_convolutions(hlo: str) -> int:
    """Convolutions XLA:CPU hands to YNNPACK in a compiled module's text."""
    fused = re.findall(r"conv_general_dilated[^\n]*__ynn_fusion", hlo)
    return len(fused)


def small_dcgan(cpu_convolutions: str):
    config = dcgan28.get_config()
    # Large enough that XLA's default hands convolutions to YNNPACK (it keeps tiny ones itself).
    config.batch_size = config.eval_batch_size = 16
    config.model.generator.features = (32, 16)
    config.model.discriminator.features = (16, 32)
    config.cpu_convolutions = cpu_convolutions
    return config


def compiled_step_text(cpu_convolutions: str) -> str:
    experiment = train.Experiment(small_dcgan(cpu_convolutions), tempfile.mkdtemp())
    state = experiment.abstract_state()  # shapes and shardings: nothing to initialise or run
    batch = experiment.put_batch(experiment.batcher.batch(0))
    return experiment.train_step.lower(state, batch, experiment.root).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_eigen_convolutions_leave_no_library_convolution():
    if not compiler._library_option_known():
        pytest.skip("this jaxlib's XLA:CPU has no YNNPACK fusion option")
    assert library_convolutions(compiled_step_text("default")) > 0
    eigen = compiled_step_text("eigen")
    assert library_convolutions(eigen) == 0
    assert " convolution(" in eigen or "conv_general_dilated" in eigen  # the convolutions are kept


@pytest.mark.parametrize("value", ["ynn", "Eigen", ""])
def test_unknown_cpu_convolutions_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"config.cpu_convolutions=.*expected one of \('eigen'"):
        compiler.step_compiler_options(value)


def test_default_keeps_xla_options():
    assert compiler.step_compiler_options("default") is None


def test_config_without_the_key_still_runs():
    """A workdir's config.json from before ``cpu_convolutions`` existed still loads and runs."""
    config = small_dcgan("eigen").to_dict()
    del config["cpu_convolutions"]
    experiment = train.Experiment(ml_collections.ConfigDict(config).lock(), tempfile.mkdtemp())
    state = experiment.initial_state()
    batch = experiment.put_batch(experiment.batcher.batch(0))
    _, _, finite = experiment.train_step(state, batch, experiment.root)
    assert bool(finite)
