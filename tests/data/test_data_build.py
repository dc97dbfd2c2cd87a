"""`build_source` / `build_batcher`: dispatch on the config, directory resolution, binarisation."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

import experiments.data as data
from data_test_utils import shared_data_dir, write_idx_split
from experiments.data import (
    DataError,
    build_batcher,
    build_eval_source,
    build_source,
    resolve_data_dir,
)


def config(**fields) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"dir": "", **fields})


def write_small_fashion_mnist(folder):
    """A fashion_mnist folder with the official counts, of 1x1 images to stay small."""
    for split, size in (("train", 60_000), ("test", 10_000)):
        ids = np.arange(size)
        write_idx_split(
            folder,
            split,
            (ids % 256).astype(np.uint8).reshape(size, 1, 1),
            (ids % 10).astype(np.uint8),
        )


@pytest.fixture
def no_shared_data(monkeypatch, tmp_path):
    """Makes `<repo>/../shared/data` point at an empty place and unsets $GAN_VAE_JAX_DATA."""
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "no_repo" / "main")
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)


def test_idx_dataset_from_configured_dir(tmp_path):
    write_small_fashion_mnist(tmp_path)
    source = build_source(config(name="fashion_mnist", dir=str(tmp_path)), "test")
    batch = source[np.array([0, 257])]
    assert len(source) == 10_000 and source.name == "fashion_mnist" and source.num_classes == 10
    np.testing.assert_array_equal(batch["x"].ravel(), np.array([0, 1], np.float32) / 255)
    np.testing.assert_array_equal(batch["label"], [0, 7])


def test_configured_dir_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir("~/mnist_files", "mnist") == tmp_path / "mnist_files"


def test_configured_dir_wins_even_when_missing(tmp_path):
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        build_source(config(name="mnist", dir=str(tmp_path / "nowhere")), "train")


def test_env_var_folder_is_used(tmp_path, monkeypatch, no_shared_data):
    write_small_fashion_mnist(tmp_path / "fashion_mnist")
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path))
    assert resolve_data_dir("", "fashion_mnist") == tmp_path / "fashion_mnist"
    assert len(build_source(config(name="fashion_mnist"), "train")) == 60_000


def test_no_folder_found(tmp_path, monkeypatch, no_shared_data):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path))  # Set, but without a kmnist/ folder.
    with pytest.raises(DataError) as error:
        build_source(config(name="kmnist"), "train")
    message = str(error.value)
    assert str(tmp_path / "kmnist") in message
    assert "--config.data.dir" in message and "$GAN_VAE_JAX_DATA" in message


def test_shared_folder_is_found_from_the_repo(tmp_path, monkeypatch, no_shared_data):
    shared = tmp_path / "no_repo" / "shared" / "data" / "binarized_mnist"
    shared.mkdir(parents=True)
    assert resolve_data_dir("", "binarized_mnist") == shared


@pytest.mark.shared_data
def test_real_shared_data_without_configured_dir(monkeypatch):
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    assert data.shared_data_root() / "mnist" == shared_data_dir("mnist")
    shared_data_dir("binarized_mnist")
    assert len(build_source(config(name="binarized_mnist"), "valid")) == 10_000
    assert len(build_source(config(name="mnist"), "test")) == 10_000


@pytest.mark.parametrize(
    ("name", "example_shape", "num_classes"),
    [("ring2d", (2,), 8), ("grid2d", (2,), 25), ("shapes", (32, 32, 1), 3)],
)
def test_embedded_datasets(name, example_shape, num_classes):
    cfg = config(name=name, data_seed=2, image_size=32, train_size=100, test_size=50)
    train, test = build_source(cfg, "train"), build_source(cfg, "test")
    assert (len(train), len(test)) == (100, 50)
    assert train.example_shape == example_shape and train.num_classes == num_classes
    again = build_source(cfg, "train")
    np.testing.assert_array_equal(train[np.arange(100)]["x"], again[np.arange(100)]["x"])


def test_embedded_defaults():
    source = build_source(ml_collections.ConfigDict({"name": "grid2d"}), "test")
    assert len(source) == 10_000


def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError) as error:
        build_source(config(name="cifar10"), "train")
    for name in ("mnist", "binarized_mnist", "ring2d", "shapes", "tfds:<name>"):
        assert name in str(error.value)


def test_build_batcher_binarizes_on_request():
    cfg = config(name="shapes", train_size=64, binarize="dynamic")
    binary = build_batcher(cfg, batch_size=16, seed=0).batch(2)["x"]
    assert set(np.unique(binary)) == {0.0, 1.0}
    cfg.binarize = "none"
    grey = build_batcher(cfg, batch_size=16, seed=0).batch(2)["x"]
    assert np.any((grey > 0) & (grey < 1))
    # Same order either way: binarising changes values, not which examples.
    assert np.all(binary[grey == 0] == 0) and np.all(binary[grey == 1] == 1)


def test_build_batcher_default_and_errors():
    source = build_source(config(name="ring2d", train_size=40), "train")
    batcher = build_batcher(config(name="ring2d"), batch_size=8, seed=1, source=source)
    assert batcher.source is source and batcher.transform is None and batcher.steps_per_epoch == 5
    with pytest.raises(DataError, match=r"unknown data.binarize 'static'"):
        build_batcher(config(name="ring2d", binarize="static"), batch_size=8, seed=1, source=source)


def test_eval_source_of_dynamic_binarization_is_one_fixed_binarization():
    config = ml_collections.ConfigDict(
        dict(name="shapes", dir="", binarize="dynamic", image_size=16, test_size=50)
    )
    first = build_eval_source(config, "test")[np.arange(50)]["x"]
    again = build_eval_source(config, "test")[np.arange(50)]["x"]
    grey = build_source(config, "test")[np.arange(50)]["x"]
    assert set(np.unique(first)) <= {0.0, 1.0}
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, grey)
    # Fully black and fully white pixels keep their value.
    np.testing.assert_array_equal(first[grey == 0.0], 0.0)
    np.testing.assert_array_equal(first[grey == 1.0], 1.0)
