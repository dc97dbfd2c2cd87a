"""Train batches gathered on the devices from a copy of the split kept there (``data.on_device``).

On an accelerator the host pipeline (a numpy gather, then a copy to the device) can take longer
than a small model's step. ``DeviceBatcher`` copies the whole train split to the devices once,
then each step sends only the step's example indices, ``Batcher.global_indices(step)``, and
gathers the batch there, already split over the mesh's data axis. The copy is made at the first
batch, so commands that load an experiment without training (evaluate, sample) never make it.
The batches are exactly the host batcher's (same examples, same order, same values), so a run is
the same function of its config either way; it needs the split to fit in each device's memory,
one process, and no random transform (dynamic binarisation draws its noise on the host).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments.data.errors import DataError
from experiments.data.pipeline import Batcher


class DeviceBatcher:
    """``batcher``'s batches, gathered on the devices.

    Args:
        batcher: the host batcher whose order (and source) to use; it must have no transform.
        replicated: where the split lives (every device of the mesh keeps a copy).
        batch_sharding: how each gathered batch is split over the devices.

    Raises:
        DataError: the batcher has a transform, or the program runs in more than one process.
    """

    def __init__(self, batcher: Batcher, replicated, batch_sharding) -> None:
        if batcher.transform is not None:
            raise DataError(
                "data.on_device needs a split without random transforms (data.binarize='none')"
            )
        if jax.process_count() != 1:
            raise DataError("data.on_device supports one process; use the host pipeline")
        self.batcher = batcher
        self._replicated = replicated
        self._arrays: dict[str, jax.Array] | None = None  # the split, once copied
        self._gather = jax.jit(_take, out_shardings=batch_sharding)

    @property
    def copied(self) -> bool:
        """Whether the split is on the devices yet (it is copied at the first batch)."""
        return self._arrays is not None

    def batch(self, step: int) -> dict[str, jax.Array]:
        """The global batch of train step ``step``, on the devices."""
        if self._arrays is None:
            everything = self.batcher.source[np.arange(len(self.batcher.source))]
            self._arrays = jax.device_put(everything, self._replicated)
        indices = self.batcher.global_indices(step).astype(np.int32)
        return self._gather(self._arrays, indices)


def _take(arrays: dict[str, jax.Array], indices: jax.Array) -> dict[str, jax.Array]:
    return {key: jnp.take(value, indices, axis=0) for key, value in arrays.items()}
