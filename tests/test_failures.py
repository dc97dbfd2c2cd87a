"""Bad input and interruptions: a clear message, a non-zero exit, and nothing lost."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from test_checkpoint import filled, flip_middle_bytes

from conftest import REPO_ROOT, run_main, shared_data_dir
from experiments import checkpoint, train, writers
from test_train import TINY_CONFIG_FILE, command_line_overrides, damage_array_data, tiny_config


def workdir_listing(workdir):
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # test_checkpoint
def test_non_finite_loss_stops_and_names_the_newest_checkpoint_that_verifies(tmp_path, capsys):
    good = tiny_config(num_train_steps=8, checkpoint_every_steps=2)  # keeps 4, 6 and 8
    assert train.Experiment(good, tmp_path).run() == 0
    checkpoints = tmp_path / "checkpoints"
    before = workdir_listing(checkpoints)
    exploding = train.Experiment(
        tiny_config(checkpoint_every_steps=100, **{"optimizer.discriminator.learning_rate": 1e30}),
        tmp_path,
    )
    assert exploding.run() == 1
    error = capsys.readouterr().err
    assert "non-finite metric at step" in error
    assert f"last good checkpoint is checkpoint {checkpoints / '8'}, left intact" in error
    assert workdir_listing(checkpoints) == before
    assert checkpoint.Checkpointer(checkpoints, keep=3).latest_step() == 8
    # Checkpoint 8 is spoilt on disk after the run resumed from it: the stop names 6.
    checkpointer = checkpoint.Checkpointer(checkpoints, keep=3)
    state, step = checkpointer.resume(exploding.abstract_state())
    assert step == 8
    damage_array_data(checkpoints / "8")
    writer = writers.MetricWriter(tmp_path, resume_step=8)
    with train.StopSignal() as stop:
        assert exploding._loop(state, 8, checkpointer, writer, stop) == 1
    writer.close()
    checkpointer.close()
    error = capsys.readouterr().err
    assert "non-finite metric at step" in error
    # The flipped byte lands in raw or compressed array data depending on how orbax laid out that
    # save's files, so the reason is a changed leaf or an unreadable file: either fails 8.
    assert (
        f"the last good checkpoint is checkpoint {checkpoints / '6'} "
        "(newer: 8 failed verification ("
    ) in error
    assert "(newer: 8 failed verification (leaf " in error or "(unreadable: " in error
    assert workdir_listing(checkpoints) == before


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_intact_checkpoint_is_one_line_status_1_and_nothing_is_deleted(tmp_path):
    config = tiny_config()
    experiment = train.Experiment(config, tmp_path)
    experiment.write_config(0)
    checkpointer = checkpoint.Checkpointer(tmp_path / "checkpoints", keep=3)
    for step in (4, 8):
        checkpointer.save(step, filled(experiment.abstract_state()))
    checkpointer.close()
    flip_middle_bytes(tmp_path / "checkpoints" / "4")
    damage_array_data(tmp_path / "checkpoints" / "8")
    before = workdir_listing(tmp_path)
    result = run_main(
        f"--config={TINY_CONFIG_FILE}", f"--workdir={tmp_path}", *command_line_overrides()
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"error: no intact checkpoint in {tmp_path / 'checkpoints'}: 8 failed verification ("
    )
    assert "; 4 failed verification (" in result.stderr
    assert workdir_listing(tmp_path) == before


def test_evaluate_best_with_a_damaged_best_checkpoint_is_one_line(tmp_path):
    from experiments.evaluation import best

    config = tiny_config(**{"evaluation.best_metric": "d_loss"})
    experiment = train.Experiment(config, tmp_path)
    experiment.write_config(0)
    keeper = best.BestCheckpointer(tmp_path / best.BEST_DIR, "d_loss", "min")
    state = filled(experiment.abstract_state())
    assert keeper.update(6, state, {"eval/d_loss": 0.5})
    keeper.close()
    kept = best.BestCheckpointer(tmp_path / best.BEST_DIR, "d_loss", "min")
    assert kept.best() == (6, 0.5)
    restored = kept.restore(6, experiment.abstract_state())  # verified: the state saved
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    kept.close()
    damage_array_data(tmp_path / best.BEST_DIR / "6")
    before = workdir_listing(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path}", "--best"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"error: checkpoint {tmp_path / best.BEST_DIR / '6'} failed verification (leaf "
    )
    assert workdir_listing(tmp_path) == before


def test_sigterm_saves_a_checkpoint_at_the_current_step(tmp_path):
    command = [sys.executable, "-m", "experiments.main", f"--config={TINY_CONFIG_FILE}"]
    command += [f"--workdir={tmp_path}", *command_line_overrides(num_train_steps=100000)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    for line in process.stdout:
        if line.startswith("step 4: checkpoint saved"):
            process.send_signal(signal.SIGTERM)
            break
    output = process.stdout.read()
    process.stdout.close()
    assert process.wait() == 128 + signal.SIGTERM
    assert "Stopped by SIGTERM: checkpoint" in output
    stopped_at = int(output.split("checkpoints/")[1].split()[0].rstrip("."))
    assert stopped_at >= 4
    assert checkpoint.Checkpointer(tmp_path / "checkpoints", keep=3).latest_step() == stopped_at


def test_missing_data_directory(tmp_path):
    result = run_main(
        "--config=configs/dcgan_mnist.py",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.dir={tmp_path / 'nowhere'}",
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert str(tmp_path / "nowhere") in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_truncated_idx_file(tmp_path):
    mnist = shared_data_dir("mnist")
    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    for path in mnist.glob("*.gz"):
        (data_dir / path.name).write_bytes(path.read_bytes())
    whole = gzip.decompress((mnist / "train-images-idx3-ubyte.gz").read_bytes())
    (data_dir / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(whole[:100_000]))
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me")
    result = run_main(
        "--config=configs/dcgan_mnist.py", f"--workdir={workdir}", f"--config.data.dir={data_dir}"
    )
    assert result.returncode == 1
    assert "train-images-idx3-ubyte.gz" in result.stderr
    assert "truncated" in result.stderr
    assert "Traceback" not in result.stderr
    assert workdir_listing(workdir) == ["notes.txt"]
