"""IDX reader: exact values on small files, every kind of damage, and the real MNIST files."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from data_test_utils import idx_bytes, shared_data_dir, write_file, write_idx_split
from experiments.data import DataError, PixelSource
from experiments.data.idx import load_idx_split

RNG = np.random.default_rng(1234)
IMAGES = RNG.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
LABELS = np.array([7, 0, 3], np.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_parses_exact_values(tmp_path, gz):
    write_idx_split(tmp_path, "test", IMAGES, LABELS, gz=gz)
    source = load_idx_split(tmp_path, "test", "tiny")
    batch = source[np.array([2, 0])]
    assert len(source) == 3
    assert source.example_shape == (28, 28, 1)
    assert batch["x"].dtype == np.float32 and batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["x"][..., 0], IMAGES[[2, 0]].astype(np.float32) / 255)
    np.testing.assert_array_equal(batch["label"], [3, 7])
    assert source.num_classes == 8  # Unknown dataset: max label + 1.


def test_pixels_stay_uint8_and_batches_are_their_unit_floats():
    source = PixelSource({"x": IMAGES[..., None], "label": LABELS}, "tiny", num_classes=10)
    batch = source[np.array([1, 1, 0])]
    assert batch["x"].dtype == np.float32 and batch["label"].dtype == np.uint8
    np.testing.assert_array_equal(batch["x"], IMAGES[[1, 1, 0], ..., None] / np.float32(255))
    assert float(batch["x"].max()) <= 1.0 and source.example_shape == (28, 28, 1)
    with pytest.raises(DataError, match="uint8"):
        PixelSource({"x": IMAGES.astype(np.float32)}, "tiny")


def test_an_idx_split_keeps_its_pixels_as_uint8(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS, gz=True)
    assert isinstance(load_idx_split(tmp_path, "test", "tiny"), PixelSource)


def test_gzipped_file_preferred_over_plain(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS, gz=True)
    write_idx_split(tmp_path, "test", IMAGES[:2], LABELS[:2], gz=False)
    assert len(load_idx_split(tmp_path, "test", "tiny")) == 3


def test_other_image_sizes_follow_the_header(tmp_path):
    write_idx_split(tmp_path, "train", IMAGES[:, :5, :7], LABELS)
    source = load_idx_split(tmp_path, "train", "tiny")
    assert source.example_shape == (5, 7, 1)


def test_bad_magic_number(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS)
    # A labels file where the images file should be: valid IDX, wrong magic.
    write_file(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(LABELS))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: bad magic number 0x00000801"):
        load_idx_split(tmp_path, "test", "tiny")


def test_garbage_header(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS)
    write_file(tmp_path / "t10k-labels-idx1-ubyte.gz", b"<html>Not Found</html>")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: bad magic number"):
        load_idx_split(tmp_path, "test", "tiny")


def test_truncated_payload(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS, gz=False)
    write_file(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(IMAGES)[:1000])
    expected = r"t10k-images-idx3-ubyte: truncated: expected 2352 pixel bytes \(.*\), got 984"
    with pytest.raises(DataError, match=expected):
        load_idx_split(tmp_path, "test", "tiny")


def test_truncated_header(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS)
    write_file(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(IMAGES)[:9])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: truncated: header"):
        load_idx_split(tmp_path, "test", "tiny")


def test_truncated_gzip_stream(tmp_path):
    images_path, _ = write_idx_split(tmp_path, "test", IMAGES, LABELS)
    compressed = images_path.read_bytes()
    images_path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: truncated gzip stream"):
        load_idx_split(tmp_path, "test", "tiny")


def test_corrupt_gzip_stream(tmp_path):
    images_path, _ = write_idx_split(tmp_path, "test", IMAGES, LABELS)
    images_path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: corrupt gzip stream"):
        load_idx_split(tmp_path, "test", "tiny")


def test_trailing_bytes(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS)
    write_file(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(LABELS) + b"\x00\x00")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: 2 unexpected bytes"):
        load_idx_split(tmp_path, "test", "tiny")


def test_image_and_label_counts_must_match(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS[:2])
    with pytest.raises(DataError, match=r"3 images but 2 labels"):
        load_idx_split(tmp_path, "test", "tiny")


def test_known_dataset_sizes_are_checked(tmp_path):
    write_idx_split(tmp_path, "train", IMAGES, LABELS)
    with pytest.raises(DataError, match=r"fashion_mnist train should have 60000 examples, got 3"):
        load_idx_split(tmp_path, "train", "fashion_mnist")


def test_known_dataset_label_range_is_checked(tmp_path):
    # 1x1 images keep the 60000-example file tiny.
    labels = np.zeros(60_000, np.uint8)
    labels[123] = 10
    write_idx_split(tmp_path, "train", np.zeros((60_000, 1, 1), np.uint8), labels)
    with pytest.raises(DataError, match=r"label 10 out of range 0-9"):
        load_idx_split(tmp_path, "train", "kmnist")
    labels[123] = 9
    write_idx_split(tmp_path, "train", np.zeros((60_000, 1, 1), np.uint8), labels)
    assert load_idx_split(tmp_path, "train", "kmnist").num_classes == 10


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        load_idx_split(missing, "train", "mnist")
    message = str(error.value)
    assert str(missing) in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "--config.data.dir" in message


def test_missing_file(tmp_path):
    _, labels_path = write_idx_split(tmp_path, "test", IMAGES, LABELS)
    labels_path.unlink()
    with pytest.raises(DataError) as error:
        load_idx_split(tmp_path, "test", "mnist")
    assert str(labels_path) in str(error.value)
    assert "--config.data.dir" in str(error.value)


def test_unknown_split(tmp_path):
    write_idx_split(tmp_path, "test", IMAGES, LABELS)
    with pytest.raises(DataError, match=r"unknown split 'valid'"):
        load_idx_split(tmp_path, "valid", "mnist")


@pytest.fixture(scope="module")
def mnist_train():
    return load_idx_split(shared_data_dir("mnist"), "train", "mnist")


@pytest.mark.shared_data
def test_real_mnist_train(mnist_train):
    everything = mnist_train[np.arange(len(mnist_train))]
    x, labels = everything["x"], everything["label"]
    assert x.shape == (60_000, 28, 28, 1) and x.dtype == np.float32
    assert labels.dtype == np.int32 and mnist_train.num_classes == 10
    np.testing.assert_array_equal(labels[:5], [5, 0, 4, 1, 9])
    np.testing.assert_array_equal(
        np.bincount(labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    assert x.min() == 0.0 and x.max() == 1.0
    # Values are exactly k / 255: the uint8 pixels survive a round trip.
    np.testing.assert_array_equal(np.round(x[:100] * 255) / 255, x[:100])


@pytest.mark.shared_data
def test_real_mnist_test():
    source = load_idx_split(shared_data_dir("mnist"), "test", "mnist")
    labels = source[np.arange(len(source))]["label"]
    assert len(source) == 10_000 and source.example_shape == (28, 28, 1)
    np.testing.assert_array_equal(labels[:5], [7, 2, 1, 0, 4])
    np.testing.assert_array_equal(
        np.bincount(labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )


@pytest.mark.shared_data
def test_real_truncated_copy_reports_sizes(tmp_path):
    # The first kilobytes of the real gzip stream: the header survives, the pixels do not.
    real = (shared_data_dir("mnist") / "t10k-images-idx3-ubyte.gz").read_bytes()
    write_idx_split(tmp_path, "test", IMAGES, LABELS)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(real[:4096])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: truncated"):
        load_idx_split(tmp_path, "test", "mnist")
    # Same bytes, decompressed as far as they go and stored uncompressed.
    partial = zlib.decompressobj(wbits=31).decompress(real[:4096])  # 31: gzip container.
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(partial)
    expected = rf"truncated: expected 7840000 pixel bytes \(.*\), got {len(partial) - 16}"
    with pytest.raises(DataError, match=expected):
        load_idx_split(tmp_path, "test", "mnist")
