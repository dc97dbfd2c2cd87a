"""The one batched loop (``experiments.batched``) and the one sampling contract
(``experiments.sampling``): the same samples for the same key and count, whatever the batch size,
in ``experiments.sample`` and the evaluator alike."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import batched, sampling
from experiments.evaluation import evaluator, features


@pytest.mark.parametrize(
    ("num", "batch_size", "multiple", "rows"),
    [(23, 5, 1, 5), (20, 5, 1, 5), (3, 8, 1, 8), (10, 3, 4, 4), (9, 8, 8, 8), (1, 1, 2, 2)],
)
def test_batches_pad_to_the_multiple_and_cover_each_example_once(num, batch_size, multiple, rows):
    data = np.arange(100, 100 + num)
    found = list(batched.batches(num, batch_size, lambda p: {"x": data[p]}, multiple=multiple))
    assert len(found) == -(-num // batch_size)
    assert all(len(b["x"]) == len(b["index"]) == len(b["mask"]) == rows for b in found)
    for number, batch in enumerate(found):
        # Batch b holds examples b * batch_size ... whatever the multiple (the device count), at
        # the same rows; padding rows repeat the batch's last example.
        real = np.arange(number * batch_size, min((number + 1) * batch_size, num))
        np.testing.assert_array_equal(batch["mask"], np.arange(rows) < len(real))
        np.testing.assert_array_equal(batch["index"][: len(real)], real)
        np.testing.assert_array_equal(batch["x"][: len(real)], data[real])
        np.testing.assert_array_equal(batch["x"][len(real) :], data[real[-1]])
    mask = np.concatenate([b["mask"] for b in found])
    assert mask.sum() == num and mask.dtype == bool


def test_collect_keeps_the_real_rows_of_every_output_in_order():
    data = np.arange(11, dtype=np.float32)
    out = batched.collect(
        batched.batches(11, 4, lambda p: {"x": data[p]}),
        lambda b: {"double": jnp.asarray(b["x"]) * 2, "index": b["index"]},
    )
    np.testing.assert_array_equal(out["double"], 2 * data)
    np.testing.assert_array_equal(out["index"], np.arange(11))
    with pytest.raises(ValueError, match="empty"):
        batched.collect(batched.batches(0, 4), lambda b: b["index"])


class ToyFamily:
    """A conditional 'model' whose sample is an independent function of its key and label (no
    engine code): x = normal(key) + 10 * label, shaped as 4x4x1 images in [0, 1]-ish."""

    conditional = True
    num_classes = 3

    def sample(self, state, key, num, labels=None):
        noise = jax.vmap(lambda k: jax.random.normal(k, (4, 4, 1)))(
            jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num))
        )
        return state * noise + 10.0 * labels[:, None, None, None]


def reference_samples(key, num, labels):
    """The contract written out independently: sample i from fold_in(key, i), row 0 of a batch of 1."""
    rows = []
    for i in range(num):
        k = jax.random.fold_in(jax.random.fold_in(key, i), 0)
        rows.append(np.asarray(jax.random.normal(k, (4, 4, 1))) * 0.5 + 10.0 * labels[i])
    return np.stack(rows)


def test_samples_do_not_depend_on_the_batch_size_and_default_labels_are_balanced():
    family, state, key = ToyFamily(), jnp.float32(0.5), sampling.sample_key(3)
    expected_labels = np.arange(7) % 3
    expected = reference_samples(key, 7, expected_labels)
    for batch_size in (1, 3, 7, 500):
        samples, labels = sampling.generate(family, state, 7, key, batch_size=batch_size)
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_allclose(samples, expected, rtol=1e-6, atol=1e-6)
    repeated, labels = sampling.generate(family, state, 5, key, labels=[2, 0])
    np.testing.assert_array_equal(labels, [2, 0, 2, 0, 2])
    np.testing.assert_allclose(repeated, reference_samples(key, 5, labels), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("conditional", "labels", "message"),
    [
        (False, [0], "unconditional"),
        (True, [3], r"\[0, 3\)"),
        (True, [-1], r"\[0, 3\)"),
        (True, [], "empty"),
    ],
)
def test_bad_labels_are_refused(conditional, labels, message):
    family = ToyFamily()
    family.conditional = conditional
    with pytest.raises(sampling.LabelError, match=message):
        sampling.resolve_labels(family, 4, labels)


def evaluator_samples(family, state, num: int, seed: int, sample_batch_size: int) -> np.ndarray:
    """The images the evaluator generates for ``experiments.evaluate --seed=seed
    --num_samples=num``, caught at its feature net (a stand-in whose features are the images)."""
    seen = []

    def extract_batch(images):
        seen.append(np.asarray(images))
        flat = np.asarray(images).reshape(len(images), -1)
        return features.Features(flat, flat[:, :3])

    net = type("Net", (), {"extract_batch": staticmethod(extract_batch)})()
    options = evaluator.EvalOptions(num_samples=num, sample_batch_size=sample_batch_size)
    labels = sampling.resolve_labels(family, num, None)
    evaluator.generated_features(family, state, net, sampling.sample_key(seed), options, labels)
    return np.concatenate(seen)


def test_the_evaluator_scores_the_samples_the_sample_command_writes():
    """The evaluator's generated images (at two sample batch sizes) are the samples of
    ``experiments.sample.generate`` (at two batch sizes) for the same seed and count."""
    from experiments import sample as sample_command

    family, state, num = ToyFamily(), jnp.float32(0.5), 10
    for batch_size in (4, 10):
        written, labels = sample_command.generate(family, state, num, seed=5, batch_size=batch_size)
        np.testing.assert_array_equal(labels, np.arange(num) % 3)
        for sample_batch_size in (3, 6):
            seen = evaluator_samples(family, state, num, 5, sample_batch_size)
            np.testing.assert_allclose(seen, written, rtol=1e-6, atol=1e-6)
