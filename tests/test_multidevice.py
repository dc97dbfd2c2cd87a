"""Data parallelism on fake CPU devices: the same run on 1 and 2 devices gives the same numbers
(up to the order of floating-point sums), because no draw depends on how the batch is split."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np

from conftest import REPO_ROOT
from experiments import train
from test_train import tiny_config

TWO_DEVICE_RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, "tests")
    import jax, numpy as np
    from test_train import tiny_config
    from experiments import sharding, train
    experiment = train.Experiment(tiny_config(), sys.argv[1])
    assert experiment.mesh.size == 2, experiment.mesh
    state = experiment.initial_state()
    for step in range(4):
        batch = experiment.put_batch(experiment.batcher.batch(step))
        assert batch["x"].sharding == sharding.batch_sharded(experiment.mesh)
        half = experiment.config.batch_size // 2
        assert [shard.data.shape[0] for shard in batch["x"].addressable_shards] == [half, half]
        state, _, _ = experiment.train_step(state, batch, experiment.root)
    np.savez(sys.argv[2], *[np.asarray(leaf) for leaf in jax.tree.leaves(state)])
    """
)


def test_two_devices_match_one(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run(
        [sys.executable, "-c", TWO_DEVICE_RUN, str(tmp_path / "two"), str(tmp_path / "two.npz")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = train.Experiment(tiny_config(), tmp_path / "one")
    assert experiment.mesh.size == 1
    state = experiment.initial_state()
    for step in range(4):
        batch = experiment.put_batch(experiment.batcher.batch(step))
        state, _, _ = experiment.train_step(state, batch, experiment.root)
    two = np.load(tmp_path / "two.npz")
    leaves = jax.tree.leaves(state)
    assert len(two.files) == len(leaves)
    for index, leaf in enumerate(leaves):
        np.testing.assert_allclose(two[f"arr_{index}"], np.asarray(leaf), rtol=1e-4, atol=1e-6)
