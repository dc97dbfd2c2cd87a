"""The one loop over a split in fixed-size batches: padding, a mask and the examples' global positions.

Every pass over a whole set of examples goes through here: the train loop's eval over the eval
split, the feature extraction of real and generated images, sampling (``experiments.sampling``)
and a family's own evaluation (the VAE's NLL estimate). Each batch has the same shape, so the
function applied to it compiles once:

- each batch holds the next ``batch_size`` examples (fewer in the last one), padded to
  ``padded_size(batch_size, multiple)`` rows, a multiple of ``multiple`` (the number of devices
  the batch is split over): no caller's batch size has to divide by the device count, and batch
  ``b`` holds examples ``b * batch_size ...`` at the same rows on any number of devices, so a
  draw keyed by the batch number and the row is the same on 1 device or 8;
- padding rows repeat the batch's last example (real values, so nothing non-finite can come from
  padding) and the boolean ``'mask'`` marks the real examples;
- ``'index'`` (int32) holds each row's position in the whole set (padding rows repeat the last), so
  a per-example random draw can fold in the global position and not depend on the batch size.

``batches(num, batch_size, read)`` yields the padded batches; ``collect(batches, fn)`` applies
``fn`` to each and concatenates the per-example outputs of the real rows, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

Batch = dict[str, Any]


def padded_size(batch_size: int, multiple: int = 1) -> int:
    """``batch_size`` rounded up to a multiple of ``multiple``."""
    if batch_size < 1 or multiple < 1:
        raise ValueError(f"batch size and multiple must be >= 1; got {batch_size}, {multiple}")
    return -(-batch_size // multiple) * multiple


def batches(
    num: int,
    batch_size: int,
    read: Callable[[np.ndarray], Batch] | None = None,
    *,
    multiple: int = 1,
) -> Iterator[Batch]:
    """The ``num`` examples in order, ``batch_size`` at a time, each batch padded to
    ``padded_size(batch_size, multiple)`` rows.

    ``read(positions) -> dict`` returns the examples at an int array of positions (a data source
    is such a function: ``source.__getitem__``); without it a batch holds only ``'index'`` and
    ``'mask'``. Yields ``{**read(positions), 'index': positions, 'mask': real}`` where padding rows
    repeat the batch's last example's position.
    """
    size = padded_size(batch_size, multiple)
    if num < 0:
        raise ValueError(f"num must be >= 0; got {num}")
    for start in range(0, num, batch_size):
        stop = min(start + batch_size, num)
        rows = np.arange(start, start + size)
        positions = np.minimum(rows, stop - 1)
        batch = dict(read(positions)) if read is not None else {}
        batch["index"] = positions.astype(np.int32)
        batch["mask"] = rows < stop
        yield batch


def collect(batch_iterator, fn: Callable[[Batch], Any], fetch: Callable = jax.device_get) -> Any:
    """``fn(batch)`` for every batch, its per-example outputs (a pytree of arrays whose leading axis
    is the batch's rows) fetched to the host and concatenated over the real rows: one pytree of
    numpy arrays with a leading axis of the number of examples. ``fetch``: how outputs reach the
    host (``sharding.Placement.fetch`` gathers them from every process)."""
    parts = []
    for batch in batch_iterator:
        mask = np.asarray(batch["mask"], bool)
        outputs = fetch(fn(batch))
        parts.append(jax.tree.map(lambda value, mask=mask: np.asarray(value)[mask], outputs))
    if not parts:
        raise ValueError("no batches: an empty set of examples")
    return jax.tree.map(lambda *values: np.concatenate(values), *parts)
