"""TFDS sources without TensorFlow: a tiny dataset prepared here, and the fast failures.

`tfds.testing.mock_data` is not used: its data-source mock reports `is_prepared()` False (the
metadata folder it points to is not shipped in the pip package), which our pre-network check
rightly refuses, and its `__getitems__` mock is broken in tfds 4.9.10. A real dataset, prepared in
array_record format in a temporary folder and read back by name, tests the real code path instead.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from experiments.data import Batcher, DataError, build_source
from experiments.data.tfds_source import load_tfds_split

NUM_TRAIN = 7
NUM_TEST = 3


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG encoding of a (H, W, 1) uint8 image; tfds would need TensorFlow to encode arrays."""
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0]).save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_image(index: int) -> np.ndarray:
    """Image `index`: pixel (r, c) = 10 * index + r + c, so each example is recognisable."""
    rows, columns = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    return (10 * index + rows + columns).astype(np.uint8)[..., np.newaxis]


class GanVaeJaxTinyDigits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Seven train and three test 5x4 grey images, with a 4-class label and a text id."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(5, 4, 1)),
            "label": tfds.features.ClassLabel(num_classes=4),
            "id": tfds.features.Text(),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {
            "train": self._generate_examples(range(NUM_TRAIN)),
            "test": self._generate_examples(range(NUM_TRAIN, NUM_TRAIN + NUM_TEST)),
        }

    def _generate_examples(self, indices):
        for index in indices:
            yield (
                index,
                {"image": png_bytes(tiny_image(index)), "label": index % 4, "id": f"#{index}"},
            )


class GanVaeJaxTinyVectors(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A dataset without an 'image' feature."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict(
            {"values": tfds.features.Tensor(shape=(3,), dtype=np.float32)}
        )
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index in range(2):
            yield index, {"values": np.full(3, index, np.float32)}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    for builder_class in (GanVaeJaxTinyDigits, GanVaeJaxTinyVectors):
        builder_class(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def decode_indices(x: np.ndarray) -> np.ndarray:
    """Recovers each example's index from its top-left pixel (10 * index / 255)."""
    return np.round(x[:, 0, 0, 0] * 255 / 10).astype(int)


def test_tensorflow_is_not_installed_nor_imported():
    assert importlib.util.find_spec("tensorflow") is None
    assert "tensorflow" not in sys.modules


def test_importing_tfds_does_not_hang():
    # A fresh interpreter: importing must not reach for the network.
    subprocess.run([sys.executable, "-c", "import tensorflow_datasets"], check=True, timeout=60)


def test_reads_prepared_dataset_by_name(tfds_dir):
    source = load_tfds_split("gan_vae_jax_tiny_digits", "train", tfds_dir)
    batch = source[np.arange(len(source))]
    assert len(source) == NUM_TRAIN and source.name == "tfds:gan_vae_jax_tiny_digits"
    assert source.example_shape == (5, 4, 1) and source.num_classes == 4
    assert set(batch) == {"x", "label"}  # The text 'id' is dropped.
    assert batch["x"].shape == (NUM_TRAIN, 5, 4, 1) and batch["x"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    indices = decode_indices(batch["x"])
    # tfds stores examples in its own (hashed) order; each one must be intact.
    assert sorted(indices) == list(range(NUM_TRAIN))
    for position, index in enumerate(indices):
        np.testing.assert_array_equal(batch["x"][position], tiny_image(index) / np.float32(255))
        assert batch["label"][position] == index % 4
    # Indexing follows the requested order.
    reordered = source[np.array([3, 0, 3])]["x"]
    np.testing.assert_array_equal(decode_indices(reordered), indices[[3, 0, 3]])


def test_split_strings_and_build_source(tfds_dir):
    config = ml_collections.ConfigDict(
        {"name": "tfds:gan_vae_jax_tiny_digits", "dir": str(tfds_dir)}
    )
    test = build_source(config, "test")
    assert sorted(decode_indices(test[np.arange(len(test))]["x"])) == [7, 8, 9]
    assert len(build_source(config, "train[:3]")) == 3
    batcher = Batcher(build_source(config, "train"), 3, seed=0)
    assert batcher.batch(1)["x"].shape == (3, 5, 4, 1)
    assert "tensorflow" not in sys.modules


def test_unknown_split(tfds_dir):
    with pytest.raises(DataError, match=r"split 'valid'.*Unknown split"):
        load_tfds_split("gan_vae_jax_tiny_digits", "valid", tfds_dir)


def test_dataset_without_images(tfds_dir):
    with pytest.raises(DataError, match=r"no 'image' feature"):
        load_tfds_split("gan_vae_jax_tiny_vectors", "train", tfds_dir)


def test_unprepared_dataset_fails_without_download(tmp_path):
    # Must raise at once: a download attempt would hang for minutes retrying DNS offline.
    with pytest.raises(DataError) as error:
        load_tfds_split("mnist", "train", tmp_path)
    message = str(error.value)
    assert "'mnist' is not prepared in" in message and str(tmp_path) in message
    assert f"tfds build mnist --data_dir {tmp_path} --file_format array_record" in message
    assert "download_and_prepare()" in message and "--config.data.dir" in message
    assert not any(tmp_path.iterdir())  # Nothing was downloaded or created.


def test_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match=r"TFDS dataset 'no_such_dataset_xyz' not found"):
        load_tfds_split("no_such_dataset_xyz", "train", tmp_path)


def test_unknown_version(tmp_path):
    with pytest.raises(DataError, match=r"'mnist:9.9.9'"):
        load_tfds_split("mnist:9.9.9", "train", tmp_path)
