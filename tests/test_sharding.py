"""``sharding.Placement.put_local``: how every batch reaches the devices (values, dtypes, placement)."""

from __future__ import annotations

import jax
import numpy as np

from experiments import sharding


def host_batch():
    return {
        "x": np.arange(4 * 3, dtype=np.float32).reshape(4, 3) / 7,
        "label": np.array([3, 1, 4, 1], np.int32),
        "mask": np.array([True, True, False, True]),
    }


def test_a_host_batch_keeps_its_values_and_dtypes_and_is_split_over_the_data_axis():
    mesh = sharding.make_data_mesh()
    placed = sharding.Placement(mesh).put_local(host_batch())
    assert sorted(placed) == ["label", "mask", "x"]
    for key, expected in host_batch().items():
        assert isinstance(placed[key], jax.Array)
        assert placed[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(np.asarray(placed[key]), expected, err_msg=key)
        assert placed[key].sharding == sharding.batch_sharded(mesh), key


def test_a_batch_already_split_over_the_devices_is_not_copied():
    mesh = sharding.make_data_mesh()
    placed = jax.device_put(host_batch(), sharding.batch_sharded(mesh))
    again = sharding.Placement(mesh).put_local(placed)
    for key, value in placed.items():
        assert again[key] is value, key
