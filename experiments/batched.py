"""The one loop over a split in fixed-size batches: padding, a mask and the examples' global positions.

Every pass over a whole set of examples goes through here: the train loop's eval over the eval
split, the feature extraction of real and generated images, sampling (``experiments.sampling``)
and a family's own evaluation (the VAE's NLL estimate). Each batch has the same shape, so the
function applied to it compiles once:

- ``batch_size`` is rounded up to a multiple of ``multiple`` (the number of devices the batch is
  split over), so no caller's batch size has to divide by the device count;
- the last batch is padded by repeating the last example (real values, so nothing non-finite can
  come from padding) and its boolean ``'mask'`` marks the real examples;
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
    """The ``num`` examples in order, in batches of ``padded_size(batch_size, multiple)`` rows.

    ``read(positions) -> dict`` returns the examples at an int array of positions (a data source
    is such a function: ``source.__getitem__``); without it a batch holds only ``'index'`` and
    ``'mask'``. Yields ``{**read(positions), 'index': positions, 'mask': positions < num}`` with
    the positions of padding rows clipped to ``num - 1``.
    """
    size = padded_size(batch_size, multiple)
    if num < 0:
        raise ValueError(f"num must be >= 0; got {num}")
    for start in range(0, num, size):
        rows = np.arange(start, start + size)
        positions = np.minimum(rows, num - 1)
        batch = dict(read(positions)) if read is not None else {}
        batch["index"] = positions.astype(np.int32)
        batch["mask"] = rows < num
        yield batch


def collect(batch_iterator, fn: Callable[[Batch], Any]) -> Any:
    """``fn(batch)`` for every batch, its per-example outputs (a pytree of arrays whose leading axis
    is the batch's rows) fetched to the host and concatenated over the real rows: one pytree of
    numpy arrays with a leading axis of the number of examples."""
    parts = []
    for batch in batch_iterator:
        mask = np.asarray(batch["mask"], bool)
        outputs = jax.device_get(fn(batch))
        parts.append(jax.tree.map(lambda value, mask=mask: np.asarray(value)[mask], outputs))
    if not parts:
        raise ValueError("no batches: an empty set of examples")
    return jax.tree.map(lambda *values: np.concatenate(values), *parts)
