"""End to end through the engine on tiny configs: outputs, compile-once, bit-exact resume, bad input."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import dcgan_mnist
from conftest import REPO_ROOT, run_main
from experiments import checkpoint, provenance, train, writers

# A DCGAN small enough to train a few steps in seconds, on the embedded shapes.
TINY_CONFIG_FILE = "configs/dcgan_mnist.py"
TINY_OVERRIDES = {
    "data.name": "shapes",
    "data.image_size": 16,
    "model.image_size": 16,
    "model.latent_dim": 8,
    "model.generator.features": (16, 8),
    "model.discriminator.features": (8, 16),
    "batch_size": 8,
    "eval_batch_size": 200,
    "num_grid_examples": 16,
    "num_train_steps": 12,
    "log_every_steps": 2,
    "checkpoint_every_steps": 4,
    "eval_every_steps": 6,
    "evaluation.metrics": "",  # no feature net takes 16 px shapes; tests/evaluation covers it
    "evaluation.best_metric": "",
}


def tiny_config(**overrides):
    config = dcgan_mnist.get_config()
    for key, value in {**TINY_OVERRIDES, **overrides}.items():
        parent = config
        *path, leaf = key.split(".")
        for part in path:
            parent = parent[part]
        parent[leaf] = value
    return config.lock()


def command_line_overrides(**overrides) -> list[str]:
    return [
        f"--config.{key}={value}".replace(" ", "")
        for key, value in {**TINY_OVERRIDES, **overrides}.items()
    ]


def restore_final(workdir, config):
    experiment = train.Experiment(config, workdir)
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=10)
    step = ckpt.latest_step()
    state = ckpt.restore(step, experiment.abstract_state())
    ckpt.close()
    return step, state


def training_metrics(workdir) -> bytes:
    """metrics.jsonl as written: no timings (those are in perf.jsonl), so it repeats byte for byte."""
    return (workdir / writers.METRICS_FILE).read_bytes()


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The reference: 12 steps without interruption."""
    workdir = tmp_path_factory.mktemp("straight")
    config = tiny_config()
    experiment = train.Experiment(config, workdir)
    assert experiment.run() == 0
    return workdir, config, experiment


def test_outputs_of_a_run(straight_run):
    workdir, _, _ = straight_run
    records = writers.read_metrics(workdir)
    train_steps = [r["step"] for r in records if "d_loss" in r]
    assert train_steps == [2, 4, 6, 8, 10, 12]
    eval_records = [r for r in records if "eval/d_accuracy" in r]
    assert [r["step"] for r in eval_records] == [6, 12]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["12", "4", "8"]
    assert sorted(p.name for p in (workdir / "samples").iterdir()) == [
        "samples_0000006.png",
        "samples_0000012.png",
    ]
    assert json.loads((workdir / "config.json").read_text())["num_train_steps"] == 12
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))


def test_timings_go_to_perf_jsonl(straight_run):
    workdir, _, _ = straight_run
    assert not any(
        key.startswith(train.PERF_PREFIX) for r in writers.read_metrics(workdir) for key in r
    )
    perf = writers.read_metrics(workdir, writers.PERF_FILE)
    assert [r["step"] for r in perf] == [2, 4, 6, 8, 10, 12]
    assert all(set(r) == {"step", "perf/steps_per_sec"} for r in perf)
    assert all(r["perf/steps_per_sec"] > 0 for r in perf)


# Files of a checkpoint step that hold no timestamp, path or random name: equal in two runs. The
# array data are OCDBT files whose names are random and whose split into files varies from save to
# save, so they are compared through the restored arrays; _CHECKPOINT_METADATA holds the checksums
# of every array and two timestamps; commit_success.txt holds the step's path.
CHECKPOINT_FILES = ("default/_METADATA", "default/_sharding", "default/array_metadatas/process_0")
CHECKPOINT_TIMESTAMPS = ("init_timestamp_nsecs", "commit_timestamp_nsecs")


def checkpoint_metadata(step_dir) -> dict:
    metadata = json.loads((step_dir / "_CHECKPOINT_METADATA").read_text())
    assert set(CHECKPOINT_TIMESTAMPS) <= set(metadata)
    return {k: v for k, v in metadata.items() if k not in CHECKPOINT_TIMESTAMPS}


def test_two_runs_of_one_config_are_bitwise_identical(straight_run, tmp_path):
    workdir, config, _ = straight_run
    assert train.Experiment(config, tmp_path).run() == 0
    assert (tmp_path / writers.METRICS_FILE).read_bytes() == (
        workdir / writers.METRICS_FILE
    ).read_bytes()
    for name in ("config.json", "samples/samples_0000006.png", "samples/samples_0000012.png"):
        assert (tmp_path / name).read_bytes() == (workdir / name).read_bytes(), name
    steps = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == steps == ["12", "4", "8"]
    experiment = train.Experiment(config, tmp_path)
    for step in steps:
        first, second = workdir / "checkpoints" / step, tmp_path / "checkpoints" / step
        for name in CHECKPOINT_FILES:
            assert (first / name).read_bytes() == (second / name).read_bytes(), (step, name)
        recorded = checkpoint_metadata(first)
        assert recorded == checkpoint_metadata(second)
        assert recorded["custom_metadata"]["checksums"]["leaves"]  # the arrays' sha256s
        states = []
        for run in (workdir, tmp_path):
            ckpt = checkpoint.Checkpointer(run / "checkpoints", keep=10)
            states.append(ckpt.restore(int(step), experiment.abstract_state()))
            ckpt.close()
        leaves = [jax.tree.leaves(state) for state in states]
        for a, b in zip(*leaves, strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()


def test_step_compiles_once(straight_run):
    _, _, experiment = straight_run
    assert experiment.train_step._cache_size() == 1
    assert experiment.eval_step._cache_size() == 1


def test_resume_in_two_parts_is_bit_exact(straight_run, tmp_path):
    workdir, config, _ = straight_run
    assert train.Experiment(tiny_config(num_train_steps=6), tmp_path).run() == 0
    assert train.Experiment(config, tmp_path).run() == 0
    step, resumed = restore_final(tmp_path, config)
    _, straight = restore_final(workdir, config)
    assert step == 12
    assert_trees_equal(resumed, straight)
    assert training_metrics(tmp_path) == training_metrics(workdir)
    # provenance.json: the resume appended an attempt and kept the first.
    attempts = provenance.read(tmp_path)
    assert [(a["start_step"], a["end"]["final_step"]) for a in attempts] == [(0, 6), (6, 12)]
    assert [a["config"]["num_train_steps"] for a in attempts] == [6, 12]
    assert attempts[0]["end"]["time"] <= attempts[1]["start_time"]


def test_provenance_of_a_run(straight_run):
    workdir, config, _ = straight_run
    (attempt,) = provenance.read(workdir)
    assert attempt["config"] == json.loads((workdir / "config.json").read_text())
    assert (attempt["seed"], attempt["data_seed"]) == (config.seed, config.seed)
    assert attempt["start_step"] == 0
    assert attempt["end"]["exit_status"] == 0 and attempt["end"]["final_step"] == 12
    assert attempt["start_time"] <= attempt["end"]["time"]
    git = lambda *args: subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert attempt["git"]["commit"] == git("rev-parse", "HEAD")
    assert attempt["git"]["dirty"] == bool(git("status", "--porcelain", "--untracked-files=no"))
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        assert attempt["packages"][name] == importlib.metadata.version(name)
    assert attempt["packages"]["python"] == platform.python_version()
    assert attempt["devices"]["count"] == jax.device_count()
    assert attempt["devices"]["kind"] == jax.devices()[0].device_kind
    assert attempt["devices"]["process_count"] == 1
    assert attempt["xla_flags"] == os.environ.get("XLA_FLAGS")
    assert attempt["determinism"]["xla_gpu_deterministic_ops"] is False
    assert attempt["jax_settings"]["jax_enable_x64"] is False
    assert attempt["argv"] == sys.argv  # the command line of the process that trained


def test_finished_run_says_so(straight_run, capsys):
    workdir, config, _ = straight_run
    assert train.Experiment(config, workdir).run() == 0
    assert "Run already finished" in capsys.readouterr().out
    assert len(provenance.read(workdir)) == 1  # nothing trained: no attempt recorded


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_rerun_is_bit_exact(straight_run, tmp_path):
    workdir, config, _ = straight_run
    command = [sys.executable, "-m", "experiments.main", f"--config={TINY_CONFIG_FILE}"]
    command += [f"--workdir={tmp_path}", *command_line_overrides()]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    # Killed as soon as the save of checkpoint 8 has started (so 4 has committed): 8 may be cut off.
    for line in process.stdout:
        if line.startswith("step 8: checkpoint saved"):
            process.kill()
            break
    process.stdout.close()
    assert process.wait() == -signal.SIGKILL
    result = run_main(*command[3:])
    assert result.returncode == 0, result.stderr
    assert "Resuming from checkpoint" in result.stdout
    killed, rerun = provenance.read(tmp_path)  # the killed attempt never ended
    assert killed["end"] is None and killed["start_step"] == 0
    assert rerun["start_step"] in (4, 8) and rerun["end"]["exit_status"] == 0
    _, resumed = restore_final(tmp_path, config)
    _, straight = restore_final(workdir, config)
    assert_trees_equal(resumed, straight)
    assert training_metrics(tmp_path) == training_metrics(workdir)


def test_workdir_round_trip(straight_run):
    from experiments import workdir as workdir_lib

    workdir, config, _ = straight_run
    assert workdir_lib.load_config(workdir) == config
    _, state, step = workdir_lib.load_experiment(workdir)
    _, expected = restore_final(workdir, config)
    assert step == 12
    assert_trees_equal(state, expected)


def damage_array_data(step_dir):
    """Flips the middle byte of the largest file of a checkpoint's array data (OCDBT ``d/`` files)."""
    files = [p for p in (step_dir / "default").rglob("*") if p.parent.name == "d"]
    largest = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    largest.write_bytes(bytes(data))


def test_a_damaged_newest_checkpoint_is_skipped_and_the_resume_is_bit_exact(
    straight_run, tmp_path, capsys
):
    workdir, config, _ = straight_run
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)  # a run with checkpoints 4, 8 and 12
    checkpoints = tmp_path / "checkpoints"
    damage_array_data(checkpoints / "12")
    capsys.readouterr()
    assert train.main(config, str(tmp_path)) == 0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if not line.startswith("[")]  # not the progress
    assert len(lines) == 1, err
    assert lines[0].startswith(f"warning: checkpoint {checkpoints / '12'} failed verification (")
    assert lines[0].endswith(
        f"; moved to {checkpoints / 'corrupt-12'}; resuming from the newest intact one, "
        f"{checkpoints / '8'}"
    )
    assert f"Resuming from checkpoint {checkpoints / '8'}." in out
    assert sorted(p.name for p in checkpoints.iterdir()) == ["12", "4", "8", "corrupt-12"]
    _, resumed = restore_final(tmp_path, config)
    _, straight = restore_final(workdir, config)
    assert_trees_equal(resumed, straight)
    assert training_metrics(tmp_path) == training_metrics(workdir)


def test_workdir_skips_a_damaged_checkpoint_with_one_line_and_moves_nothing(
    straight_run, tmp_path, capsys
):
    from experiments import workdir as workdir_lib

    workdir, config, _ = straight_run
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
    checkpoints = tmp_path / "checkpoints"
    damage_array_data(checkpoints / "12")
    before = sorted(p.name for p in checkpoints.iterdir())
    capsys.readouterr()
    _, state, step = workdir_lib.load_experiment(tmp_path)
    err = capsys.readouterr().err
    assert step == 8
    assert err.count("\n") == 1
    assert err.startswith(f"warning: checkpoint {checkpoints / '12'} failed verification (leaf ")
    assert err.endswith(f"; using the newest intact one, {checkpoints / '8'}\n")
    experiment = train.Experiment(config, workdir)
    straight = checkpoint.Checkpointer(workdir / "checkpoints", keep=10)
    assert_trees_equal(state, straight.restore(8, experiment.abstract_state()))
    straight.close()
    with pytest.raises(checkpoint.VerificationError, match=r"checkpoints/12 failed verification"):
        workdir_lib.load_experiment(tmp_path, 12)
    assert sorted(p.name for p in checkpoints.iterdir()) == before
