"""Binarised MNIST .amat reader: exact values, malformed lines, and the real files."""

from __future__ import annotations

import numpy as np
import pytest

from data_test_utils import amat_text, shared_data_dir, write_file
from experiments.data import DataError
from experiments.data.amat import load_binarized_mnist

PIXELS = np.random.default_rng(7).integers(0, 2, size=(4, 784), dtype=np.uint8)


@pytest.mark.parametrize(
    "file_name", ["binarized_mnist_valid.amat", "binarized_mnist_valid.amat.gz"]
)
def test_parses_exact_values(tmp_path, file_name):
    write_file(tmp_path / file_name, amat_text(PIXELS))
    source = load_binarized_mnist(tmp_path, "valid", check_size=False)
    x = source[np.arange(4)]["x"]
    assert set(source[np.arange(4)]) == {"x"} and source.num_classes is None
    assert x.shape == (4, 28, 28, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x.reshape(4, 784), PIXELS.astype(np.float32))


def test_row_major_order(tmp_path):
    pixels = np.zeros((1, 784), np.uint8)
    pixels[0, 28 * 3 + 5] = 1  # Row 3, column 5.
    write_file(tmp_path / "binarized_mnist_test.amat", amat_text(pixels))
    x = load_binarized_mnist(tmp_path, "test", check_size=False)[np.array([0])]["x"]
    assert x[0, 3, 5, 0] == 1 and x.sum() == 1


def test_windows_line_endings_and_missing_final_newline(tmp_path):
    text = amat_text(PIXELS).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    write_file(tmp_path / "binarized_mnist_train.amat", text)
    x = load_binarized_mnist(tmp_path, "train", check_size=False)[np.arange(4)]["x"]
    np.testing.assert_array_equal(x.reshape(4, 784), PIXELS)


def test_bad_value_names_line_and_position(tmp_path):
    lines = amat_text(PIXELS).split(b"\n")
    lines[2] = lines[2][:20] + b"2" + lines[2][21:]  # Value 11 of line 3.
    write_file(tmp_path / "binarized_mnist_test.amat.gz", b"\n".join(lines))
    with pytest.raises(DataError, match=r"binarized_mnist_test.amat.gz: line 3, value 11: .*b'2'"):
        load_binarized_mnist(tmp_path, "test", check_size=False)


def test_short_line_names_line(tmp_path):
    lines = amat_text(PIXELS).split(b"\n")
    lines[1] = lines[1][:-2]  # Drop the last value and its separator: 783 values.
    write_file(tmp_path / "binarized_mnist_test.amat", b"\n".join(lines))
    with pytest.raises(DataError, match=r"binarized_mnist_test.amat: line 2: .*784.*got 783"):
        load_binarized_mnist(tmp_path, "test", check_size=False)


def test_double_space_is_rejected(tmp_path):
    lines = amat_text(PIXELS).split(b"\n")
    lines[0] = lines[0].replace(b" ", b"  ", 1)
    write_file(tmp_path / "binarized_mnist_test.amat", b"\n".join(lines))
    with pytest.raises(DataError, match=r"line 1"):
        load_binarized_mnist(tmp_path, "test", check_size=False)


def test_row_count_is_checked(tmp_path):
    write_file(tmp_path / "binarized_mnist_test.amat", amat_text(PIXELS))
    with pytest.raises(DataError, match=r"expected 10000 lines for the test split, got 4"):
        load_binarized_mnist(tmp_path, "test")


def test_truncated_gzip(tmp_path):
    path = write_file(tmp_path / "binarized_mnist_test.amat.gz", amat_text(PIXELS))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"binarized_mnist_test.amat.gz: truncated"):
        load_binarized_mnist(tmp_path, "test", check_size=False)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError) as error:
        load_binarized_mnist(tmp_path, "train")
    assert str(tmp_path / "binarized_mnist_train.amat.gz") in str(error.value)
    assert "--config.data.dir" in str(error.value)
    with pytest.raises(DataError, match=r"does not exist"):
        load_binarized_mnist(tmp_path / "nowhere", "train")


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match=r"unknown split 'validation'"):
        load_binarized_mnist(tmp_path, "validation")


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("split", "size"), [("train", 50_000), ("valid", 10_000), ("test", 10_000)]
)
def test_real_files(split, size):
    source = load_binarized_mnist(shared_data_dir("binarized_mnist"), split)
    x = source[np.arange(len(source))]["x"]
    assert x.shape == (size, 28, 28, 1) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    # About 13% of binarised MNIST pixels are on; the border is (almost) always off.
    assert 0.11 < x.mean() < 0.16
    assert x[:, 0, :, :].mean() < 1e-3
