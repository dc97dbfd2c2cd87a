"""``config.num_replicas``: K seeds as one compiled step, each replica the standalone run of its seed."""

import functools
import json
import sys
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from configs import gan_ring2d
from examples import gaussian
from experiments import optim, replicas, rng, train, workdir

# gan_ring2d shrunk; lazy R1 (every 3rd D update) so that the step's lax.cond is exercised.
TINY = {
    "data.train_size": 64,
    "data.test_size": 12,
    "model.generator.features": (8, 8),
    "model.discriminator.features": (8,),
    "model.regularizers.r1_interval": 3,
    "batch_size": 16,
    "eval_batch_size": 12,
    "num_grid_examples": 4,
    "num_train_steps": 20,
    "log_every_steps": 5,
    "checkpoint_every_steps": 10,
    "eval_every_steps": 20,
}


def ring_config(**overrides):
    config = gan_ring2d.get_config()
    for key, value in {**TINY, **overrides}.items():
        parent = config
        *path, leaf = key.split(".")
        for part in path:
            parent = parent[part]
        parent[leaf] = value
    return config.lock()


def leaves(state):
    return jax.tree.leaves(jax.device_get(state))


def assert_bitwise(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@functools.cache
def standalone(seed: int, data_seed: int, steps: int, **overrides):
    """A standalone run of ``seed`` on ``data_seed``'s data: its initial and final states."""
    experiment = train.Experiment(
        ring_config(seed=seed, data_seed=data_seed, **overrides), "unused"
    )
    initial = experiment.initial_state()
    state = jax.tree.map(jnp.copy, initial)
    for step in range(steps):
        state, _, finite = experiment.train_step(
            state, experiment.train_batch(step), experiment.root
        )
        assert bool(finite)
    return initial, state


def test_replica_config_is_a_standalone_run_of_its_seed():
    config = ring_config(seed=7, num_replicas=3)
    replica = replicas.replica_config(config, 2)
    assert (replica.seed, replica.data_seed, replica.num_replicas) == (9, 7, 1)
    assert replicas.replica_config(ring_config(seed=7, data_seed=4), 1).data_seed == 4


@pytest.mark.parametrize("loop", ["vmap", "unroll"])
def test_replicas_are_the_standalone_runs(loop):
    """Initial states bit for bit, and 20 steps within 1e-5 of standalone seeds 5, 6, 7 on seed 5's
    data; the step compiles once."""
    run = replicas.Replicas(ring_config(seed=5, num_replicas=3, replica_loop=loop), "unused")
    assert run.loop == loop
    stacked, alive = run.initial_state()
    for step in range(20):
        stacked, _, finite, alive = run.train_step(
            stacked, run.base.train_batch(step), run.roots, alive
        )
    assert np.asarray(finite).all() and np.asarray(alive).all()
    assert run.train_step._cache_size() == 1
    for i in range(3):
        initial, final = standalone(5 + i, 5, 20)
        assert_bitwise(run.initial_states()[i], initial)
        got = replicas.unstack(stacked, i)
        assert int(got.step) == 20
        for x, y in zip(leaves(got), leaves(final), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # Every replica really differs (not one seed K times).
    assert not np.array_equal(
        leaves(replicas.unstack(stacked, 0))[1], leaves(replicas.unstack(stacked, 1))[1]
    )


def test_auto_loop_rule():
    shapes = {"kernel": jax.ShapeDtypeStruct((3, 3, 1, 8), jnp.float32)}
    dense = {"kernel": jax.ShapeDtypeStruct((3, 8), jnp.float32)}
    config = ring_config()
    assert replicas.choose_loop(config, dense) == "vmap"
    assert replicas.choose_loop(config, shapes) == (
        "unroll" if jax.default_backend() == "cpu" else "vmap"
    )
    assert replicas.choose_loop(ring_config(replica_loop="vmap"), shapes) == "vmap"


def test_freeze_keeps_stopped_replicas():
    new = {"a": jnp.arange(6.0).reshape(3, 2), "step": jnp.array([4, 4, 4])}
    old = {"a": -jnp.ones((3, 2)), "step": jnp.array([3, 3, 3])}
    kept = replicas.freeze(jnp.array([True, False, True]), new, old)
    np.testing.assert_array_equal(kept["a"], [[0, 1], [-1, -1], [4, 5]])
    np.testing.assert_array_equal(kept["step"], [4, 3, 4])


def test_bad_num_replicas_is_one_line(tmp_path, capsys):
    assert train.main(ring_config(num_replicas=0), str(tmp_path / "run")) == 1
    assert "config.num_replicas=0: expected a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_run_writes_ordinary_workdirs_and_resumes_bit_exactly(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train.main(ring_config(seed=3, num_replicas=2), str(whole)) == 0
    assert train.main(ring_config(seed=3, num_replicas=2, num_train_steps=10), str(parts)) == 0
    assert train.main(ring_config(seed=3, num_replicas=2), str(parts)) == 0
    _, reference = standalone(4, 3, 20)
    for i in range(2):
        experiment, state, step = workdir.load_experiment(whole / f"replica_{i}")
        assert step == 20 and experiment.config.seed == 3 + i
        assert (experiment.config.num_replicas, experiment.config.data_seed) == (1, 3)
        _, resumed, _ = workdir.load_experiment(parts / f"replica_{i}")
        assert_bitwise(resumed, state)
        lines = [
            json.loads(line)
            for line in (whole / f"replica_{i}/metrics.jsonl").read_text().splitlines()
        ]
        assert [line["step"] for line in lines if "d_loss" in line] == [5, 10, 15, 20]
        assert any("eval/modes_covered" in line for line in lines)
        assert (whole / f"replica_{i}/samples").is_dir()
        if i == 1:
            for x, y in zip(leaves(state), leaves(reference), strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# -- a replica that goes non-finite -----------------------------------------------------------------


@struct.dataclass
class BudgetState:
    step: jax.Array
    params: Any
    opt_state: Any
    budget: jax.Array


class BudgetFamily(gaussian.GaussianFamily):
    """The Gaussian fit with a budget drawn at init, uniform in [2, 12): its metric ``headroom`` is
    ``log(budget - step)``, not finite from the first step at or past the budget."""

    def init_state(self, key, example_batch):
        state = super().init_state(key, example_batch)
        return BudgetState(state.step, state.params, state.opt_state, budget_of(key))

    def train_step(self, state, batch, key):
        inner = gaussian.GaussianState(state.step, state.params, state.opt_state)
        new, metrics = super().train_step(inner, batch, key)
        metrics["headroom"] = jnp.log(state.budget - new.step)
        return BudgetState(new.step, new.params, new.opt_state, state.budget), metrics


def budget_of(key):
    return 2.0 + 10.0 * jax.random.uniform(key)


def make_budget_family(config):
    return BudgetFamily(example_shape=(2,), optimizer=optim.make_optimizer(config.optimizer))


@pytest.mark.slow
def test_a_non_finite_replica_stops_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    module = types.ModuleType("replica_budget_family")
    module.make = make_budget_family
    monkeypatch.setitem(sys.modules, module.__name__, module)
    from examples import gaussian_ring2d

    config = gaussian_ring2d.get_config()
    config.family = module.__name__
    config.data.train_size, config.data.test_size = 64, 12
    config.update(
        dict(
            batch_size=16,
            eval_batch_size=12,
            num_train_steps=8,
            log_every_steps=1,
            checkpoint_every_steps=2,
            eval_every_steps=8,
            seed=0,
            num_replicas=4,
        )
    )
    # Each seed's stop step, from its init key alone: the first step s >= budget.
    stops = [
        int(np.ceil(float(budget_of(rng.purpose_key(rng.root_key(s), "init"))))) for s in range(4)
    ]
    assert min(stops) <= 8 < max(stops), stops  # some stop, some go the whole way
    status = train.main(config.lock(), str(tmp_path))
    err = capsys.readouterr().err
    assert status == 1
    for i, stop in enumerate(stops):
        folder = tmp_path / f"replica_{i}"
        logged = [
            json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()
        ]
        saved = sorted(int(p.name) for p in (folder / "checkpoints").iterdir() if p.name.isdigit())
        if stop <= 8:
            assert (
                f"error: replica {i} (seed {i}, {folder}): non-finite metric at step {stop}" in err
            )
            assert json.loads((folder / "stopped.json").read_text())["step"] == stop
            assert max(logged) == stop - 1 and max(saved) < stop
        else:
            assert f"replica {i} " not in err
            assert max(logged) == 8 and max(saved) == 8
    # Run again: the stopped replicas stay stopped, the finished run says so.
    assert train.main(config.lock(), str(tmp_path)) == 0
