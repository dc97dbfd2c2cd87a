"""The one sampling contract: which samples a checkpoint gives for a key, a count and labels.

``experiments.sample`` (samples to a file), ``experiments.evaluate`` and the train loop's sample
metrics all draw through ``sample_batches``, so for the same checkpoint, key and count they get the
same samples, whatever their batch sizes:

- sample ``i`` is ``family.sample(state, fold_in(key, i), 1, labels[i:i+1])[0]``: it depends only on
  the state, the key, ``i`` and its label (batches are ``jax.vmap`` of that, so a batched
  computation may round differently in the last bit; tests compare to 1e-6);
- a conditional model's labels, when none are given, are ``default_labels``: ``i % num_classes``
  (every class equally often, the same in every command);
- ``sample_key(seed)`` is the key of a command's ``--seed``.

A family is conditional when its ``conditional`` attribute is true; its ``num_classes`` bounds the
labels. Batches go through ``experiments.batched`` (padding and a mask).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import jax
import numpy as np

from experiments import batched, rng, sharding

SAMPLES_PURPOSE = "samples"


class LabelError(ValueError):
    """Labels that the model cannot take (for an unconditional model, or out of range)."""


def sample_key(seed: int) -> jax.Array:
    """The key of the samples a command draws with ``--seed``."""
    return rng.purpose_key(rng.root_key(seed), SAMPLES_PURPOSE)


def is_conditional(family) -> bool:
    return bool(getattr(family, "conditional", False))


def default_labels(num: int, num_classes: int) -> np.ndarray:
    """``i % num_classes`` for ``i < num`` (int32): the labels of a conditional model's samples
    when none are given."""
    return (np.arange(num) % num_classes).astype(np.int32)


def resolve_labels(
    family, num: int, labels: Sequence[int] | np.ndarray | None
) -> np.ndarray | None:
    """The ``(num,)`` int32 labels of ``num`` samples, or None for an unconditional model.

    ``labels`` are repeated in order to fill ``num`` (sample ``i`` gets ``labels[i % len]``);
    None gives ``default_labels``. Raises ``LabelError`` for labels given to an unconditional
    model or outside ``[0, family.num_classes)``.
    """
    if not is_conditional(family):
        if labels is not None:
            raise LabelError("labels given but the model is unconditional")
        return None
    num_classes = int(family.num_classes)
    if labels is None:
        return default_labels(num, num_classes)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if labels.size == 0:
        raise LabelError("the list of labels is empty")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise LabelError(
            f"labels must lie in [0, {num_classes}); got {sorted(set(labels.tolist()))}"
        )
    return labels[np.arange(num) % labels.size].astype(np.int32)


def sampler(family):
    """``f(state, key, index, labels) -> samples``: sample ``index[j]`` (with ``labels[j]``) for each
    row ``j``, as the module docstring defines it; jit it once and call it on every batch."""

    def one(state, key, index, label):
        label = None if label is None else label[None]
        return family.sample(state, jax.random.fold_in(key, index), 1, label)[0]

    def many(state, key, index, labels):
        return jax.vmap(one, in_axes=(None, None, 0, 0 if labels is not None else None))(
            state, key, index, labels
        )

    return many


def sample_batches(
    family,
    state,
    num: int,
    key: jax.Array,
    *,
    labels: np.ndarray | None = None,
    batch_size: int = 500,
    placement: sharding.Placement | None = None,
    compiled=None,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``(samples, labels)`` of each batch, in order, for the real rows only (numpy; labels None
    when unconditional). ``labels``: already resolved (``resolve_labels``). ``placement``: the
    mesh of ``state`` (a run's ``Experiment.placement``; default every device on the data axis),
    over which each batch is split. ``compiled``: a jitted ``sampler(family)`` to reuse between
    calls (the train loop keeps one)."""
    conditional = is_conditional(family)
    if conditional and labels is None:
        labels = default_labels(num, int(family.num_classes))
    placement = placement or sharding.Placement(sharding.make_data_mesh())
    compiled = compiled or jax.jit(sampler(family))
    read = (lambda positions: {"label": labels[positions]}) if conditional else None
    size = min(batch_size, num)
    for batch in batched.batches(num, size, read, multiple=placement.num_devices):
        mask = batch["mask"]
        placed = placement.put_global(
            {key_: batch[key_] for key_ in ("index", "label") if key_ in batch}
        )
        images = compiled(state, key, placed["index"], placed.get("label"))
        images = np.asarray(placement.fetch(images), np.float32)[mask]
        yield images, (batch["label"][mask] if conditional else None)


def generate(
    family, state, num: int, key: jax.Array, *, labels=None, batch_size: int = 500, placement=None
) -> tuple[np.ndarray, np.ndarray | None]:
    """All ``num`` samples (float32, data layout) and their labels (int32, or None)."""
    labels = resolve_labels(family, num, labels)
    parts = list(
        sample_batches(
            family, state, num, key, labels=labels, batch_size=batch_size, placement=placement
        )
    )
    samples = np.concatenate([images for images, _ in parts])
    return samples, labels
