"""``config.data_seed`` fixes the order of the train examples, ``config.seed`` the model's draws:
K runs with different seeds and one data seed see the same data stream."""

from __future__ import annotations

import jax
import numpy as np

from experiments import data, rng, train
from test_train import tiny_config


def batches(config, steps=(0, 1, 7)):
    experiment = train.Experiment(config, "unused")
    return experiment, [experiment.host_batcher.batch(step)["x"] for step in steps]


def test_data_seed_decides_the_data_order_and_seed_the_draws():
    one, first = batches(tiny_config(seed=1, data_seed=5))
    two, second = batches(tiny_config(seed=2, data_seed=5))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    # The order is the documented pure function of (data_seed, epoch), whatever the model seed.
    order = data.epoch_permutation(5, 0, len(one.train_source))[: one.config.batch_size]
    np.testing.assert_array_equal(first[0], one.train_source[order]["x"])
    # The model's draws follow seed, not data_seed.
    assert not np.array_equal(jax.random.key_data(one.root), jax.random.key_data(two.root))
    np.testing.assert_array_equal(
        jax.random.key_data(one.root), jax.random.key_data(rng.root_key(1))
    )


def test_without_data_seed_the_data_order_follows_seed():
    config = tiny_config(seed=3)
    assert config.data_seed is None and train.data_seed(config) == 3
    _, default = batches(config)
    _, explicit = batches(tiny_config(seed=4, data_seed=3))
    _, other = batches(tiny_config(seed=4))
    for a, b, c in zip(default, explicit, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
