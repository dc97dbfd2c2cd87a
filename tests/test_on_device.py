"""``data.on_device``: the batches gathered on the devices are exactly the host pipeline's, so a run
is bit for bit the same either way; a random transform is a clear error."""

from __future__ import annotations

import tempfile

import jax
import numpy as np
import pytest

from configs.bench import dcgan28
from experiments import sharding, train
from experiments.data import DataError, build_batcher
from experiments.data.on_device import DeviceBatcher


def tiny_config(on_device: bool):
    config = dcgan28.get_config()
    config.batch_size = config.eval_batch_size = 8
    config.model.generator.features = (8, 4)
    config.model.discriminator.features = (4, 8)
    config.data.train_size = 20  # 2 full batches per epoch: steps 0-5 cross two epoch boundaries
    config.data.on_device = on_device
    return config


def test_device_batches_equal_the_host_batches():
    config = tiny_config(on_device=True)
    experiment = train.Experiment(config, tempfile.mkdtemp())
    assert isinstance(experiment.batcher, DeviceBatcher)
    host = build_batcher(config.data, config.batch_size, config.seed)
    for step in range(6):
        on_device, expected = experiment.batcher.batch(step), host.batch(step)
        assert sorted(on_device) == sorted(expected)
        for key, value in expected.items():
            assert on_device[key].dtype == jax.device_put(value).dtype
            np.testing.assert_array_equal(np.asarray(on_device[key]), value, err_msg=key)
        assert on_device["x"].sharding == sharding.batch_sharded(experiment.mesh)


def test_the_split_is_copied_at_the_first_batch_not_to_load_a_checkpoint():
    experiment = train.Experiment(tiny_config(on_device=True), tempfile.mkdtemp())
    abstract = experiment.abstract_state()  # what evaluate and sample restore into
    assert jax.tree.leaves(abstract) and not experiment.batcher.copied
    experiment.batcher.batch(0)
    assert experiment.batcher.copied


def test_a_run_on_device_batches_is_bit_identical():
    states = {}
    for on_device in (False, True):
        experiment = train.Experiment(tiny_config(on_device), tempfile.mkdtemp())
        state = experiment.initial_state()
        for step in range(4):
            batch = experiment.put_batch(experiment.batcher.batch(step))
            state, _, finite = experiment.train_step(state, batch, experiment.root)
            assert bool(finite)
        states[on_device] = jax.device_get(state)
    for host, device in zip(
        jax.tree.leaves(states[False]), jax.tree.leaves(states[True]), strict=True
    ):
        np.testing.assert_array_equal(host, device)


def test_random_transform_is_a_data_error():
    config = tiny_config(on_device=True)
    config.data.binarize = "dynamic"
    batcher = build_batcher(config.data, config.batch_size, config.seed)
    mesh = sharding.make_data_mesh()
    with pytest.raises(DataError, match=r"data.on_device needs .*data.binarize='none'"):
        DeviceBatcher(batcher, sharding.replicated(mesh), sharding.batch_sharded(mesh))


def test_host_pipeline_is_the_default():
    config = tiny_config(on_device=False)
    assert not isinstance(train.Experiment(config, tempfile.mkdtemp()).batcher, DeviceBatcher)
