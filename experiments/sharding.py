"""Placement of the train state and batches on a device mesh.

Data parallelism over one mesh axis: the state is replicated, each batch is split along its leading
axis. Randomness never depends on this placement (see ``experiments.rng``).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.errors import ConfigError

DATA_AXIS = "data"


def make_data_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    num_devices = num_devices or jax.device_count()
    return jax.make_mesh((num_devices,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh) -> None:
    if batch_size % mesh.size:
        raise ConfigError(
            f"batch_size={batch_size} is not divisible by the {mesh.size} devices of the mesh"
        )


def put_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    return jax.device_put(batch, batch_sharded(mesh))
