"""Deterministic batching: which examples a train step sees is a pure function of (seed, step).

Each epoch visits the examples in `epoch_permutation(seed, epoch, len(source))` order, in full
batches (the remainder is dropped). Resuming at any step therefore reproduces the same batches
without saving iterator state. Random transforms (dynamic binarisation) draw from a generator
seeded by (seed, step) over the whole global batch, before each process takes its slice, so their
values do not depend on the number of processes either.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from experiments.data.errors import DataError
from experiments.data.sources import Source

# Mixed into seeds so the data order, the binarisation noise and any other stream drawn from the
# same user seed are independent of each other.
PERMUTATION_PURPOSE = 0x5045524D
BINARIZE_PURPOSE = 0x42494E41

Batch = dict[str, np.ndarray]


class Transform(Protocol):
    """A batch transform whose randomness is a pure function of (seed, step, batch position)."""

    def __call__(self, batch: Batch, *, seed: int, step: int) -> Batch: ...


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The order (int64 (num_examples,)) in which epoch `epoch` visits the examples."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    return np.random.default_rng([seed, epoch, PERMUTATION_PURPOSE]).permutation(num_examples)


def dynamic_binarize(batch: Batch, *, seed: int, step: int) -> Batch:
    """A copy of `batch` whose 'x' (values in [0, 1]) is replaced by Bernoulli(x) samples, 0.0/1.0.

    The uniforms are drawn for the whole global batch from (seed, step), so each example's sample
    depends only on (seed, step, position in the global batch).
    """
    x = batch["x"]
    uniforms = np.random.default_rng([seed, step, BINARIZE_PURPOSE]).random(x.shape, np.float32)
    return {**batch, "x": (uniforms < x).astype(np.float32)}


def process_slice(global_batch_size: int, process_index: int, process_count: int) -> slice:
    """The contiguous part of a global batch that process `process_index` of `process_count` gets."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
        )
    if global_batch_size % process_count:
        raise DataError(
            f"global batch size {global_batch_size} is not divisible by the {process_count} processes"
        )
    per_process = global_batch_size // process_count
    return slice(process_index * per_process, (process_index + 1) * per_process)


class Batcher:
    """Train batches of a source, in an order fixed by (seed, step).

    Args:
        source: the split to draw from.
        global_batch_size: examples per step, summed over all processes.
        seed: fixes the order of every epoch and the randomness of `transform`.
        transform: optional `transform(batch, *, seed, step) -> batch`, applied to the global batch
            before it is split between processes.
    """

    def __init__(
        self,
        source: Source,
        global_batch_size: int,
        seed: int,
        *,
        transform: Transform | None = None,
    ) -> None:
        if global_batch_size < 1:
            raise DataError(f"batch size must be positive, got {global_batch_size}")
        if len(source) < global_batch_size:
            raise DataError(
                f"{source.name} has {len(source)} examples, fewer than one batch of "
                f"{global_batch_size}"
            )
        self.source = source
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.transform = transform
        # Cache of the last epoch's permutation: consecutive steps share it.
        self._cached_epoch: int | None = None
        self._cached_permutation = np.empty(0, np.int64)

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per epoch; the last `len(source) % global_batch_size` examples are skipped."""
        return len(self.source) // self.global_batch_size

    def permutation(self, epoch: int) -> np.ndarray:
        """`epoch_permutation` of this batcher's source, cached for the latest epoch asked."""
        if epoch != self._cached_epoch:
            self._cached_permutation = epoch_permutation(self.seed, epoch, len(self.source))
            self._cached_epoch = epoch
        return self._cached_permutation

    def global_indices(self, step: int) -> np.ndarray:
        """Source indices of the whole global batch of train step `step`."""
        step = operator.index(step)  # A numpy or Python integer; 0-d arrays too.
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        epoch, position = divmod(step, self.steps_per_epoch)
        start = position * self.global_batch_size
        return self.permutation(epoch)[start : start + self.global_batch_size]

    def batch(self, step: int, process_index: int = 0, process_count: int = 1) -> Batch:
        """This process's contiguous slice of the global batch of train step `step`."""
        part = process_slice(self.global_batch_size, process_index, process_count)
        indices = self.global_indices(step)
        if self.transform is None:
            return self.source[indices[part]]
        batch = self.transform(self.source[indices], seed=self.seed, step=operator.index(step))
        return {key: value[part] for key, value in batch.items()}


def eval_batches(source: Source, batch_size: int) -> Iterator[Batch]:
    """The whole split in order, in batches of exactly `batch_size`: `experiments.batched.batches`
    over the source (the last batch padded by repeating the last example, 'mask' marking the real
    examples, 'index' their positions)."""
    from experiments import batched  # the data package stays importable on its own

    if batch_size < 1:
        raise DataError(f"batch size must be positive, got {batch_size}")
    return batched.batches(len(source), batch_size, source.__getitem__)
