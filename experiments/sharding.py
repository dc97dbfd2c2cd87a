"""Placement of the train state and batches on a device mesh.

Data parallelism over one mesh axis: the state is replicated, each batch is split along its leading
axis. Randomness never depends on this placement (see ``experiments.rng``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
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


def batch_placer(mesh: jax.sharding.Mesh) -> Callable[[dict], dict[str, jax.Array]]:
    """A function that puts a batch on the mesh, split over its data axis.

    Host arrays go through a jitted identity rather than ``jax.device_put``: jit takes host
    arguments through its own fast path. For a 200 KB MNIST batch on 2 CPU cores that costs
    0.03-0.06 ms against 0.07-0.15 ms, and a step waited for right after its batch was placed took
    about 0.3 ms less (``vae_mnist`` and ``vae_binarized_mnist``, alternating; apparently it had
    waited for ``device_put``'s copy). The train loop, which builds the next batch while a step
    runs, hid that copy already: its steps/s did not change beyond the noise. A batch already on
    the devices (``data.on_device``) is left where it is when it is split so, as ``device_put``
    does. A mesh that spans several processes keeps ``device_put`` as before: jit's handling of
    host arguments for shardings beyond this process's devices has not been tried here.
    """
    sharded = batch_sharded(mesh)
    place_host_batch = jax.jit(_identity, in_shardings=sharded, out_shardings=sharded)
    spans_processes = not sharded.is_fully_addressable

    def place(batch: dict) -> dict[str, jax.Array]:
        placed = all(isinstance(value, jax.Array) for value in batch.values())
        if placed or spans_processes:
            return jax.device_put(batch, sharded)
        return place_host_batch(batch)

    return place


def _identity(batch):
    return batch
