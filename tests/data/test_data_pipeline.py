"""Deterministic batching: order as a function of (seed, step), process slicing, transforms, eval."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.data import (
    ArraySource,
    Batcher,
    DataError,
    dynamic_binarize,
    epoch_permutation,
    eval_batches,
)


def counting_source(num_examples: int) -> ArraySource:
    """Example i has x = [i, i] (float32) and label i % 10."""
    ids = np.arange(num_examples)
    x = np.repeat(ids[:, None], 2, axis=1).astype(np.float32)
    return ArraySource({"x": x, "label": (ids % 10).astype(np.int32)}, "counting", 10)


def example_ids(batch) -> np.ndarray:
    return batch["x"][:, 0].astype(int)


def test_array_source_indexing():
    source = counting_source(7)
    batch = source[np.array([6, 0, 6])]
    assert len(source) == 7 and source.example_shape == (2,) and source.num_classes == 10
    np.testing.assert_array_equal(example_ids(batch), [6, 0, 6])
    np.testing.assert_array_equal(batch["label"], [6, 0, 6])
    with pytest.raises(TypeError, match=r"integers"):
        source[np.array([0.5])]


def test_array_source_validates_lengths():
    with pytest.raises(DataError, match=r"leading dimension"):
        ArraySource({"x": np.zeros((3, 2)), "label": np.zeros(4)}, "bad")
    with pytest.raises(DataError, match=r"'x'"):
        ArraySource({"image": np.zeros((3, 2))}, "bad")


def test_epoch_permutation_is_a_pure_function():
    first = epoch_permutation(seed=1, epoch=0, num_examples=100)
    np.testing.assert_array_equal(first, epoch_permutation(1, 0, 100))
    np.testing.assert_array_equal(np.sort(first), np.arange(100))
    assert not np.array_equal(first, epoch_permutation(1, 1, 100))
    assert not np.array_equal(first, epoch_permutation(2, 0, 100))


def test_same_seed_and_step_give_same_batch_in_any_order():
    source = counting_source(103)
    sequential = Batcher(source, 10, seed=4)
    batches = [example_ids(sequential.batch(step)) for step in range(35)]
    resumed = Batcher(source, 10, seed=4)
    for step in [34, 3, 20, 19, 0, 21]:  # Jumps back and forth across epochs, as a resume would.
        np.testing.assert_array_equal(example_ids(resumed.batch(step)), batches[step])
    other_seed = Batcher(source, 10, seed=5)
    assert not np.array_equal(example_ids(other_seed.batch(0)), batches[0])


def test_step_may_be_a_numpy_integer():
    batcher = Batcher(counting_source(50), 10, seed=2, transform=dynamic_binarize)
    expected = batcher.batch(17)
    for step in (np.int64(17), np.array(17, np.int32)):
        np.testing.assert_array_equal(batcher.batch(step)["x"], expected["x"])
    with pytest.raises(TypeError):
        batcher.batch(17.0)


def test_each_epoch_visits_distinct_examples_in_a_new_order():
    source = counting_source(103)
    batcher = Batcher(source, 10, seed=0)
    assert batcher.steps_per_epoch == 10  # Remainder of 3 dropped.
    epochs = [
        np.concatenate([example_ids(batcher.batch(epoch * 10 + i)) for i in range(10)])
        for epoch in range(3)
    ]
    for ids in epochs:
        assert len(np.unique(ids)) == 100 and ids.min() >= 0 and ids.max() < 103
    assert not np.array_equal(epochs[0], epochs[1])
    # With an exact multiple, every example appears exactly once per epoch.
    exact = Batcher(counting_source(60), 12, seed=9)
    ids = np.concatenate([example_ids(exact.batch(step)) for step in range(5, 10)])
    np.testing.assert_array_equal(np.sort(ids), np.arange(60))


def test_process_slices_concatenate_to_the_global_batch():
    batcher = Batcher(counting_source(100), 12, seed=3)
    for step in (0, 9, 17):
        whole = batcher.batch(step)
        parts = [batcher.batch(step, process_index=i, process_count=4) for i in range(4)]
        assert all(len(part["x"]) == 3 for part in parts)
        for key in whole:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_batch_keys_are_the_source_keys():
    assert set(Batcher(counting_source(10), 5, seed=0).batch(0)) == {"x", "label"}


def test_batcher_errors():
    with pytest.raises(DataError, match=r"counting has 5 examples, fewer than one batch of 8"):
        Batcher(counting_source(5), 8, seed=0)
    batcher = Batcher(counting_source(50), 10, seed=0)
    with pytest.raises(DataError, match=r"10 is not divisible by the 3 processes"):
        batcher.batch(0, process_index=0, process_count=3)
    with pytest.raises(ValueError, match=r"process_index"):
        batcher.batch(0, process_index=2, process_count=2)


def grey_source(num_examples: int = 64) -> ArraySource:
    """Images whose pixel intensities span [0, 1]."""
    x = np.random.default_rng(0).random((num_examples, 4, 4, 1), dtype=np.float32)
    x[0] = 0.0
    x[1] = 1.0
    return ArraySource({"x": x}, "grey")


def test_dynamic_binarize_values():
    x = np.full((2000, 8), 0.3, np.float32)
    x[0], x[1] = 0.0, 1.0
    out = dynamic_binarize({"x": x, "label": np.arange(2000)}, seed=1, step=5)
    assert out["x"].dtype == np.float32 and set(np.unique(out["x"])) == {0.0, 1.0}
    assert np.all(out["x"][0] == 0) and np.all(out["x"][1] == 1)
    assert abs(out["x"][2:].mean() - 0.3) < 0.01  # 15984 Bernoulli(0.3) draws: std 0.0036.
    np.testing.assert_array_equal(out["label"], np.arange(2000))
    assert x[2, 0] == np.float32(0.3)  # Input not modified.
    again = dynamic_binarize({"x": x}, seed=1, step=5)["x"]
    np.testing.assert_array_equal(out["x"], again)
    assert not np.array_equal(out["x"], dynamic_binarize({"x": x}, seed=1, step=6)["x"])
    assert not np.array_equal(out["x"], dynamic_binarize({"x": x}, seed=2, step=5)["x"])


def test_dynamic_binarize_does_not_depend_on_process_count():
    batcher = Batcher(grey_source(), 16, seed=7, transform=dynamic_binarize)
    for step in (0, 3, 11):
        whole = batcher.batch(step)["x"]
        for process_count in (2, 4, 8):
            parts = [batcher.batch(step, i, process_count)["x"] for i in range(process_count)]
            np.testing.assert_array_equal(np.concatenate(parts), whole)
    fresh = Batcher(grey_source(), 16, seed=7, transform=dynamic_binarize)
    np.testing.assert_array_equal(fresh.batch(11)["x"], batcher.batch(11)["x"])
    assert set(np.unique(batcher.batch(0)["x"])) == {0.0, 1.0}


@pytest.mark.parametrize(("num_examples", "batch_size"), [(23, 5), (20, 5), (3, 8)])
def test_eval_batches_cover_each_example_once(num_examples, batch_size):
    batches = list(eval_batches(counting_source(num_examples), batch_size))
    assert len(batches) == -(-num_examples // batch_size)
    for batch in batches:
        assert batch["mask"].dtype == bool
        assert all(len(value) == batch_size for value in batch.values())
    mask = np.concatenate([b["mask"] for b in batches])
    ids = np.concatenate([example_ids(b) for b in batches])
    np.testing.assert_array_equal(ids[mask], np.arange(num_examples))
    assert mask.sum() == num_examples and not mask[num_examples:].any()
    np.testing.assert_array_equal(ids[~mask], num_examples - 1)  # Padding repeats the last one.
