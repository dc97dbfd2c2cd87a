"""Bad input and interruptions: a clear message, a non-zero exit, and nothing lost."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys

from conftest import REPO_ROOT, run_main, shared_data_dir
from experiments import checkpoint, train
from test_train import TINY_CONFIG_FILE, command_line_overrides, tiny_config


def workdir_listing(workdir):
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    good = tiny_config(num_train_steps=4)
    assert train.Experiment(good, tmp_path).run() == 0
    before = workdir_listing(tmp_path / "checkpoints")
    exploding = tiny_config(**{"optimizer.discriminator.learning_rate": 1e30})
    assert train.Experiment(exploding, tmp_path).run() == 1
    error = capsys.readouterr().err
    assert "non-finite metric at step" in error
    assert f"last good checkpoint is checkpoint {tmp_path / 'checkpoints' / '4'}" in error
    assert workdir_listing(tmp_path / "checkpoints") == before
    assert checkpoint.Checkpointer(tmp_path / "checkpoints", keep=3).latest_step() == 4


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
