"""One config on 1 device, 8 devices, an fsdp-sharded state or 2 processes: the same numbers.

The runs with several devices are subprocesses on fake CPU devices
(``--xla_force_host_platform_device_count``); their counterparts on one device run here. Sums over
a batch split across devices are added in another order, hence 1e-4 (relative) rather than bits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import scale_out_check

from conftest import REPO_ROOT
from experiments import workdir as workdir_lib

STAND_IN = [  # embedded data shaped as MNIST: no dataset needed
    "data.name=shapes",
    "data.train_size=256",
    "data.test_size=13",
    "data.binarize=none",
    "evaluation.metrics=",
    "evaluation.best_metric=",
]


def run_check(devices: int, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "scale_out_check.py"), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def relative_difference(found: np.ndarray, expected: np.ndarray) -> float:
    """``|found - expected| / |expected|`` (Frobenius norms, float64) of one leaf."""
    found, expected = np.asarray(found, np.float64), np.asarray(expected, np.float64)
    scale = np.linalg.norm(expected)
    return float(np.linalg.norm(found - expected) / scale) if scale else float(np.abs(found).max())


def assert_close_leaves(found, expected, prefix: str = "leaf_", tolerance: float = 1e-4) -> None:
    """Every leaf within ``tolerance`` of the expected one, relative to its norm (integers: equal). One
    weight whose Adam step flips with the sign of a gradient that rounds about zero moves by the
    learning rate; compared element by element, that one weight would fail."""
    leaves = sorted(name for name in expected.files if name.startswith(prefix))
    assert leaves and sorted(n for n in found.files if n.startswith(prefix)) == leaves
    for name in leaves:
        if expected[name].dtype.kind != "f":
            np.testing.assert_array_equal(found[name], expected[name], err_msg=name)
        else:
            assert relative_difference(found[name], expected[name]) < tolerance, name


def assert_close_metrics(found, expected, rtol: float) -> None:
    found_metrics = json.loads(str(found["metrics"]))
    expected_metrics = json.loads(str(expected["metrics"]))
    for step, (one, other) in enumerate(zip(found_metrics, expected_metrics, strict=True)):
        assert one.keys() == other.keys()
        for key in other:
            np.testing.assert_allclose(one[key], other[key], rtol=rtol, err_msg=f"{step} {key}")
    found_eval = json.loads(str(found["evaluated"]))
    expected_eval = json.loads(str(expected["evaluated"]))
    assert found_eval.keys() == expected_eval.keys()
    for key, value in expected_eval.items():
        np.testing.assert_allclose(found_eval[key], value, rtol=rtol, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_configs_start_train_sample_and_evaluate_on_8_devices(tmp_path):
    """A conditional VAE at its default batch sizes (eval, sample, feature and
    NLL batches that 8 does not divide, a split of 13 examples); the same check runs over every
    config with ``python tests/scale_out_check.py configs OUT`` (docs/devices.md)."""
    out = tmp_path / "checked.json"
    names = ["cvae_mnist"]
    run_check(8, "configs", str(out), *names)
    checked = json.loads(out.read_text())
    assert sorted(checked) == sorted(names)
    assert checked["cvae_mnist"]["features"] == [scale_out_check.EVAL_SIZE, 128]
    assert np.isfinite(checked["cvae_mnist"]["nll"])


@pytest.mark.slow
def test_8_devices_and_an_fsdp_state_match_1_device(tmp_path):
    """``vae_mnist``, 20 steps at the same global batch, on 1 device, on 8 (replicated state) and on
    8 with ``fsdp=8``, where each device holds 1/8 of every large leaf: the same batches and draws,
    so the same parameters, optimiser state, metrics and eval metrics (1e-4)."""
    pairs = [*STAND_IN, "data.image_size=28"]
    run_check(8, "train", "vae_mnist", "20", str(tmp_path / "eight.npz"), *pairs)
    run_check(8, "train", "vae_mnist", "20", str(tmp_path / "fsdp.npz"), *pairs, "mesh.fsdp=8")
    scale_out_check.run_steps("vae_mnist", 20, str(tmp_path / "one.npz"), *pairs)
    one = np.load(tmp_path / "one.npz")
    eight, fsdp = np.load(tmp_path / "eight.npz"), np.load(tmp_path / "fsdp.npz")
    for found in (eight, fsdp):
        assert_close_leaves(found, one, "first_leaf_")
        assert_close_leaves(found, one)
        assert_close_metrics(found, one, rtol=1e-4)
    # Each device holds 1/8 of the largest leaf, and the whole state shrinks accordingly.
    assert int(fsdp["largest_shard_size"]) * 8 == int(fsdp["largest_size"])
    assert int(eight["largest_shard_size"]) == int(eight["largest_size"])
    assert int(fsdp["bytes_per_device"]) < 0.2 * int(eight["bytes_per_device"])


@pytest.mark.slow
def test_a_gan_on_8_devices_with_an_fsdp_state_matches_1_device_as_far_as_rounding_allows(tmp_path):
    """``dcgan_mnist`` (conv kernels split over fsdp=8) against 1 device: the same batches and
    draws, so after one step the same state (1e-3: Adam's second moments of its smallest
    gradients, about 4e-5, differ by 1.6e-4). Later, adversarial training amplifies the different
    order of the sums (Adam divides tiny gradients by their own size, then D and G react to each
    other): after 20 steps the parameters differ by about 0.3% (norm) and the losses by 0.1%, so
    the losses of 5 steps are compared at 1% (docs/devices.md)."""
    pairs = [*STAND_IN, "data.image_size=28"]
    run_check(8, "train", "dcgan_mnist", "5", str(tmp_path / "fsdp.npz"), *pairs, "mesh.fsdp=8")
    scale_out_check.run_steps("dcgan_mnist", 5, str(tmp_path / "one.npz"), *pairs)
    one, fsdp = np.load(tmp_path / "one.npz"), np.load(tmp_path / "fsdp.npz")
    assert_close_leaves(fsdp, one, "first_leaf_", tolerance=1e-3)
    assert_close_metrics(fsdp, one, rtol=1e-2)
    assert int(fsdp["largest_shard_size"]) * 8 == int(fsdp["largest_size"])


def main_command(workdir, steps: int, *extra: str) -> list[str]:
    return [
        "--config=configs/vae_mnist.py",
        f"--workdir={workdir}",
        *[f"--config.{pair}" for pair in STAND_IN if "_size=" not in pair],
        "--config.data.image_size=28",
        f"--config.num_train_steps={steps}",
        "--config.log_every_steps=5",
        "--config.eval_every_steps=100",
        "--config.checkpoint_every_steps=5",
        "--config.num_grid_examples=4",
        *extra,
    ]


def run_main(workdir, steps: int, *extra: str, devices: int = 1, processes: int = 0):
    """``experiments.main`` on ``devices`` fake devices, or ``processes`` x ``devices`` through
    ``experiments.launch_local``."""
    if processes:
        command = [
            sys.executable,
            "-m",
            "experiments.launch_local",
            f"--num_processes={processes}",
            f"--devices_per_process={devices}",
            "--",
            *main_command(workdir, steps, *extra),
        ]
        env = dict(os.environ)
    else:
        command = [sys.executable, "-m", "experiments.main", *main_command(workdir, steps, *extra)]
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def final_leaves(workdir) -> list[np.ndarray]:
    _, state, _ = workdir_lib.load_experiment(workdir)
    return [
        np.asarray(
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        )
        for x in jax.tree.leaves(state)
    ]


def slurm_env(process: int, port: int, devices: int) -> dict:
    """What ``srun --ntasks=2`` on one node sets for task ``process`` (what JAX's detection reads)."""
    return {
        **os.environ,
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NODELIST": "localhost",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(process),
        "SLURM_LOCALID": str(process),
        "SLURM_STEP_NUM_NODES": "1",
        "JAX_COORDINATOR_PORT": str(port),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }


def run_as_by_srun(workdir, steps: int, *extra: str, devices: int) -> list[str]:
    """Two ``experiments.main`` processes started with the environment of ``srun --ntasks=2``, no
    flags: JAX's SLURM detection connects them. Returns their stdouts."""
    from experiments import launch_local

    port = launch_local.free_port()
    command = [sys.executable, "-m", "experiments.main", *main_command(workdir, steps, *extra)]
    processes = [
        subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=slurm_env(index, port, devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    return [out for out, _ in outputs]


@pytest.mark.slow
def test_two_processes_and_every_resume_across_layouts_match_one_device(tmp_path):
    """One run resumed across layouts, 5 steps each: 1 device; 2 processes x 4 devices through the
    local launcher; 2 processes x 4 devices started as ``srun --ntasks=2`` starts them (JAX's SLURM
    detection) with the state sharded over all 8 (``fsdp=8``); 1 device again. It ends where an
    uninterrupted 1-device run ends, and only process 0 wrote the logs and spoke."""
    straight, moved = tmp_path / "straight", tmp_path / "moved"
    run_main(straight, 20)
    run_main(moved, 5)
    two = run_main(moved, 10, processes=2, devices=4)
    assert "Resuming from checkpoint" in two.stdout
    first, second = run_as_by_srun(moved, 15, "--config.mesh.fsdp=8", devices=4)
    assert "Finished 15 steps" in first
    # Process 0 speaks for the run. (Process 1's stdout holds only the connection lines of JAX's
    # CPU collectives, which their threads may interleave.)
    for marker in ("Finished", "Resuming", "checkpoint", "step"):
        assert marker not in second, second
    run_main(moved, 20)
    for found, expected in zip(final_leaves(moved), final_leaves(straight), strict=True):
        assert relative_difference(found, expected) < 1e-4
    records = [json.loads(line) for line in (moved / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [5, 10, 15, 20]  # once each
    assert len(list((moved / "tensorboard").iterdir())) == 4  # one events file per part


def start_launcher(workdir, steps: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "experiments.launch_local",
        "--num_processes=2",
        "--devices_per_process=1",
        "--grace_seconds=10",
        "--",
        *main_command(workdir, steps),
    ]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_checkpoint(workdir, step: int, launcher: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not (workdir / "checkpoints" / str(step)).exists():
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no checkpoint {step} after 300 s"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_stops_both_processes_at_one_step_and_a_killed_one_ends_the_other(tmp_path):
    """SIGTERM to the launcher: both processes stop at the step JAX's preemption service agrees,
    with one checkpoint (status 143), and the rerun resumes there. Then ``kill -9`` of process 1:
    the launcher ends process 0 within 30 s, naming the lost process, and a rerun finishes."""
    workdir = tmp_path / "run"
    launcher = start_launcher(workdir, 100_000)
    wait_for_checkpoint(workdir, 5, launcher)
    launcher.send_signal(signal.SIGTERM)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 128 + signal.SIGTERM, err[-3000:]
    stopped = [line for line in out.splitlines() if line.startswith("Stopped by SIGTERM")]
    assert len(stopped) == 1, out  # one process speaks; both stopped at that step
    step = int(re.search(r"checkpoints/(\d+) saved", stopped[0]).group(1))
    assert (workdir / "checkpoints" / str(step)).is_dir()

    launcher = start_launcher(workdir, 100_000)
    wait_for_checkpoint(workdir, (step // 5 + 1) * 5, launcher)
    listing = subprocess.run(
        ["pgrep", "-f", f"experiments.main.*{workdir}.*--process_id=1"],
        capture_output=True,
        text=True,
    )
    victim = int(listing.stdout.split()[0])
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    out, err = launcher.communicate(timeout=60)
    assert time.monotonic() - killed_at < 30
    assert launcher.returncode != 0
    assert f"Resuming from checkpoint {workdir / 'checkpoints' / str(step)}" in out
    assert "process 1 of 2 was killed by SIGKILL" in err
    rerun = run_main(workdir, (step // 5 + 2) * 5)  # 2 processes resume as 1
    assert "Resuming from checkpoint" in rerun.stdout
    assert "Finished" in rerun.stdout


@pytest.mark.parametrize(
    ("shape", "spec"),
    [
        ((100, 6272), (None, "fsdp")),  # the largest dimension 8 divides
        ((4, 4, 128, 64), (None, None, "fsdp", None)),
        ((32768,), ("fsdp",)),
        ((6272,), ()),  # a batch-norm vector: below 16 384 elements
        ((6272, 1), ()),  # small: replicated
        ((64,), ()),
        ((3, 5, 7, 1001), ()),  # no dimension 8 divides
        ((), ()),
    ],
)
def test_the_fsdp_rule_splits_large_leaves_along_their_largest_divisible_dimension(shape, spec):
    from jax.sharding import PartitionSpec

    from experiments import sharding

    assert sharding.leaf_spec(shape, 8) == PartitionSpec(*spec)
    assert sharding.leaf_spec(shape, 1) == PartitionSpec()


def test_mesh_shapes_and_their_errors():
    from experiments import sharding
    from experiments.errors import ConfigError

    assert sharding.mesh_shape(-1, 1, 8) == (8, 1)
    assert sharding.mesh_shape(-1, 2, 8) == (4, 2)
    assert sharding.mesh_shape(1, 8, 8) == (1, 8)
    with pytest.raises(ConfigError, match=r"config.mesh.fsdp=3 must be >= 1 and divide the 8"):
        sharding.mesh_shape(-1, 3, 8)
    with pytest.raises(ConfigError, match=r"config.mesh.data=2 x config.mesh.fsdp=2 must equal"):
        sharding.mesh_shape(2, 2, 8)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--config.mesh.fsdp=2"], 1, "error: config.mesh.fsdp=2 must be >= 1 and divide the 1"),
        (["--config.mesh.data=0"], 1, "error: config.mesh.data=0: expected -1"),
        (["--num_processes=2"], 2, "error: --coordinator_address, --process_id missing"),
        (
            ["--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=2"],
            2,
            "error: --process_id=2 must lie in [0, --num_processes=2)",
        ),
    ],
)
def test_a_bad_mesh_or_process_flag_is_one_line(args, status, message, tmp_path):
    from conftest import run_main as run_command

    result = run_command(
        "--config=configs/quickstart.py", f"--workdir={tmp_path / 'run'}", *args, timeout=120
    )
    assert result.returncode == status
    assert result.stderr.strip() == message.strip() or result.stderr.startswith(message), (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
