"""``python -m experiments.sample``: samples of a checkpoint, with labels, deterministic in the seed,
for a conditional GAN and (unconditional) VAE workdirs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_gan_configs import shrunk
from test_sampling import evaluator_samples

from conftest import REPO_ROOT
from experiments import checkpoint, sample, train, workdir

pytestmark = pytest.mark.slow


def make_workdir(config, path, step: int):
    """A workdir as training leaves it (config.json and a checkpoint), holding the initial state
    under ``step``: sampling needs no trained weights, and this compiles no train step."""
    experiment = train.Experiment(config, path)
    path.mkdir(parents=True, exist_ok=True)
    experiment.write_config(0)
    checkpointer = checkpoint.Checkpointer(path / "checkpoints", keep=3)
    checkpointer.save(step, experiment.initial_state())
    checkpointer.wait()
    checkpointer.close()
    return path


@pytest.fixture(scope="module")
def cgan_workdir(tmp_path_factory):
    """cgan_mnist shrunk to 3-class shapes, with an EMA."""
    config = shrunk("cgan_mnist", **{"model.num_classes": 3, "model.ema_decay": 0.9})
    return make_workdir(config, tmp_path_factory.mktemp("cgan"), step=2)


def test_command_writes_labelled_samples_deterministically(cgan_workdir, tmp_path):
    out = tmp_path / "a.npz"
    args = [f"--workdir={cgan_workdir}", "--num=7", "--labels=2,0", "--seed=3", "--batch_size=4"]
    result = subprocess.run(
        [sys.executable, "-m", "experiments.sample", *args, f"--out={out}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Wrote 7 samples" in result.stdout
    with np.load(out) as saved:
        samples, labels = saved["samples"], saved["labels"]
    assert samples.shape == (7, 8, 8, 1) and samples.dtype == np.float32
    assert np.all((samples >= 0) & (samples <= 1))
    np.testing.assert_array_equal(labels, [2, 0, 2, 0, 2, 0, 2])
    # The same request through the library, with another batch size, gives the same samples.
    experiment, state, step = workdir.load_experiment(cgan_workdir)
    assert step == 2
    family = experiment.family
    again, again_labels = sample.generate(family, state, 7, seed=3, labels=[2, 0], batch_size=7)
    np.testing.assert_allclose(again, samples, atol=1e-5)
    np.testing.assert_array_equal(again_labels, labels)
    other, _ = sample.generate(family, state, 7, seed=4, labels=[2, 0], batch_size=7)
    assert not np.allclose(other, samples)
    # Without --labels sample i of a conditional model has label i % num_classes (saved too), and
    # the evaluator scores exactly these samples, at any batch size of either.
    default, drawn = sample.generate(family, state, 10, seed=0, batch_size=4)
    np.testing.assert_array_equal(drawn, np.arange(10) % 3)
    for sample_batch_size in (3, 10):
        seen = evaluator_samples(family, state, 10, 0, sample_batch_size)
        np.testing.assert_allclose(seen, default, atol=1e-5)
    with pytest.raises(sample.SampleError, match=r"must lie in \[0, 3\)"):
        sample.generate(family, state, 2, labels=[3])


def test_vae_workdir_is_unconditional(tmp_path):
    from configs import quickstart

    config = quickstart.get_config()
    config.data.update(dict(image_size=8, train_size=64, test_size=12))
    config.model.update(dict(image_shape=(8, 8, 1), latent_dim=2, conv_features=(4, 4), hidden=8))
    config.update(dict(batch_size=4, eval_batch_size=6, num_grid_examples=4))
    experiment, state, _ = workdir.load_experiment(make_workdir(config.lock(), tmp_path, step=1))
    samples, labels = sample.generate(experiment.family, state, 5, seed=0, batch_size=2)
    assert samples.shape == (5, 8, 8, 1) and labels is None
    with pytest.raises(sample.SampleError, match="unconditional"):
        sample.generate(experiment.family, state, 2, labels=[1])
