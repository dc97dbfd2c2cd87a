"""The VAE family through the engine's command line: a tiny β-VAE on the embedded shapes and a tiny
CVAE, with their grids, in-training IWAE NLL and the ``evaluation_metrics`` hook on the workdir."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT, run_main
from experiments import rng, workdir

TINY = [
    "--config.data.image_size=16",
    "--config.model.image_shape=(16,16,1)",
    "--config.model.conv_features=(8,16)",
    "--config.model.hidden=32",
    "--config.model.latent_dim=4",
    "--config.model.iwae_k_train_eval=3",
    "--config.batch_size=16",
    "--config.eval_batch_size=500",
    "--config.num_grid_examples=24",
    "--config.num_train_steps=6",
    "--config.log_every_steps=3",
    "--config.eval_every_steps=6",
    "--config.checkpoint_every_steps=6",
    "--config.model.kl_warmup_steps=4",
]


@pytest.mark.slow
def test_beta_vae_shapes_end_to_end(tmp_path):
    result = run_main("--config=configs/beta_vae_shapes.py", f"--workdir={tmp_path}", *TINY)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    final = records[-1]
    assert final["step"] == 6
    for name in ("eval/loss", "eval/elbo", "eval/kl", "eval/nll_iwae"):
        assert np.isfinite(final[name])
    train = [r for r in records if "kl_weight" in r]
    assert train[0]["kl_weight"] < train[-1]["kl_weight"] == pytest.approx(4.0)
    for grid in ("reconstructions", "prior_samples", "interpolations", "traversals"):
        assert (tmp_path / "samples" / f"{grid}_0000006.png").exists()
    experiment, state, step = workdir.load_experiment(tmp_path)
    options = {"iwae_k": 10, "batch_size": 20, "max_examples": 40}
    metrics = experiment.family.evaluation_metrics(
        state, experiment.eval_source, rng.root_key(0), options
    )
    assert step == 6 and metrics["num_examples"] == 40
    assert 0 < metrics["nll_iwae"] < -metrics["elbo"] + 1.0
    # The command's --family_options reach the same estimate; --metrics=nll computes nothing else.
    command = [sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path}"]
    command += ["--metrics=nll", "--nofloor", "--family_options=iwae_k=10,max_examples=40"]
    command += [f"--output={tmp_path / 'e.json'}"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["nll_iwae_k"] == 10 and report["num_examples"] == 40
    assert "fid" not in report and report["protocol"]["metrics"] == ["nll"]
    samples = experiment.family.sample(state, jax.random.key(0), 5)
    assert samples.shape == (5, 16, 16, 1)
    from experiments import sample as sample_command

    images, labels = sample_command.generate(experiment.family, state, 3)
    assert images.shape == (3, 16, 16, 1) and labels is None


@pytest.mark.slow
def test_conditional_vae_samples_from_a_workdir(tmp_path):
    """A CVAE workdir (on the shapes' 'label', the shape class) samples the requested classes."""
    result = run_main(
        "--config=configs/quickstart.py",
        f"--workdir={tmp_path}",
        *TINY[:-1],
        "--config.model.num_classes=3",
    )
    assert result.returncode == 0, result.stderr
    experiment, state, _ = workdir.load_experiment(tmp_path)
    assert experiment.family.conditional
    labels = np.array([0, 1, 2, 2])
    samples = experiment.family.sample(state, jax.random.key(0), 4, labels)
    assert samples.shape == (4, 16, 16, 1)
    np.testing.assert_allclose(samples[2], experiment.family.sample(state, jax.random.key(0), 3)[2])
    # The sampling command's generator: given labels repeat in order; drawn ones otherwise.
    from experiments import sample as sample_command

    images, drawn = sample_command.generate(experiment.family, state, 6, labels=[2, 0])
    assert images.shape == (6, 16, 16, 1) and drawn.tolist() == [2, 0, 2, 0, 2, 0]
    _, drawn = sample_command.generate(experiment.family, state, 6)
    assert drawn.shape == (6,) and set(drawn.tolist()) <= {0, 1, 2}
