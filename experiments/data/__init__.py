"""Data layer: every dataset as a random-access source, batched deterministically.

Layout convention, shared by all sources:

- A source is indexed by an integer array and returns a dict of numpy arrays, batched along
  axis 0. Key 'x' is always present; 'label' (int32) when the dataset has classes; other keys
  only where a dataset documents them (e.g. 'factors' for 'shapes').
- Images are NHWC float32 in [0, 1] (H, W, C per example; MNIST is 28x28x1).
- 2-D toy points are float32 (2,) in raw coordinates.
- Model families convert to their own range themselves (GANs map images to [-1, 1]).

Datasets (`data_config.name`):

- 'mnist', 'fashion_mnist', 'kmnist': IDX files (see `idx`), splits 'train' and 'test'.
- 'binarized_mnist': Larochelle's static binarisation (see `amat`), 'train', 'valid', 'test'.
- 'ring2d', 'grid2d', 'shapes': procedural, seeded by `data_config.data_seed` (see `embedded`).
- 'tfds:<name>': a TFDS dataset prepared in array_record format, any TFDS split string.

File-backed datasets are read from `data_config.dir`; when it is empty, from
`$GAN_VAE_JAX_DATA/<name>`, then `<repo>/../shared/data/<name>`.

Train batches come from `Batcher` (see `pipeline`): the examples of a step are a pure function of
(seed, step), so resuming needs no iterator state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from experiments.data.amat import SPLIT_ROWS, load_binarized_mnist
from experiments.data.embedded import (
    DEFAULT_SPLIT_SIZES,
    TOY_2D_NAMES,
    make_shapes,
    make_toy_2d,
    toy_modes,
)
from experiments.data.errors import DataError
from experiments.data.idx import MNIST_FAMILY_COUNTS, SPLIT_FILE_STEMS, load_idx_split
from experiments.data.pipeline import Batcher, dynamic_binarize, epoch_permutation, eval_batches
from experiments.data.sources import ArraySource, PixelSource, Source

__all__ = [
    "ArraySource",
    "Batcher",
    "DataError",
    "PixelSource",
    "Source",
    "build_batcher",
    "build_eval_source",
    "build_source",
    "check_name",
    "check_split",
    "dynamic_binarize",
    "epoch_permutation",
    "eval_batches",
    "resolve_data_dir",
    "toy_modes",
]

DATA_ENV_VAR = "GAN_VAE_JAX_DATA"
TFDS_PREFIX = "tfds:"
FILE_DATASETS = (*MNIST_FAMILY_COUNTS, "binarized_mnist")
EMBEDDED_DATASETS = (*TOY_2D_NAMES, "shapes")
VALID_NAMES = (*FILE_DATASETS, *EMBEDDED_DATASETS, TFDS_PREFIX + "<name>")
BINARIZE_MODES = ("none", "dynamic")
# Dynamically binarised data is evaluated on one fixed binarisation of the eval split, the same for
# every run and seed, so that eval numbers are comparable across runs.
EVAL_BINARIZATION_SEED = 0
# experiments/data/__init__.py → the repository root is two packages up.
REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_root() -> Path:
    """`<repo>/../shared/data`, where developer and CI machines keep the dataset files."""
    return REPO_ROOT.parent / "shared" / "data"


def resolve_data_dir(configured_dir: str, name: str) -> Path:
    """The folder holding the files of dataset `name`.

    `configured_dir` (`data_config.dir`, `~` expanded) wins when set, whether or not it exists, so
    that a wrong path is reported rather than silently replaced. Otherwise the first existing of
    `$GAN_VAE_JAX_DATA/<name>` and `<repo>/../shared/data/<name>`.

    Raises:
        DataError: no directory configured and none of the defaults exists.
    """
    if configured_dir:
        return Path(configured_dir).expanduser()
    candidates = []
    if os.environ.get(DATA_ENV_VAR):
        candidates.append(Path(os.environ[DATA_ENV_VAR]).expanduser() / name)
    candidates.append(shared_data_root() / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DataError(
        f"no data folder for {name!r}: looked in {', '.join(map(str, candidates))}. Set "
        f"--config.data.dir to the folder holding its files, or ${DATA_ENV_VAR} to a folder "
        f"with a {name}/ subfolder."
    )


def check_name(name: str) -> None:
    """Raises DataError unless `name` is one of `VALID_NAMES` (any `tfds:<name>`)."""
    known = name in FILE_DATASETS or name in EMBEDDED_DATASETS
    if not known and not (name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX)):
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(VALID_NAMES)}")


def check_split(data_config: Any, split: str) -> None:
    """Raises DataError when the dataset `data_config.name` has no split `split`, without reading
    it. TFDS datasets (any TFDS split string) are checked when read."""
    name = data_config.name
    if name in MNIST_FAMILY_COUNTS:
        valid = SPLIT_FILE_STEMS
    elif name == "binarized_mnist":
        valid = SPLIT_ROWS
    elif name in DEFAULT_SPLIT_SIZES:
        if data_config.get(f"{split}_size", None) is not None:  # an embedded split of given size
            return
        valid = DEFAULT_SPLIT_SIZES[name]
    else:
        return
    if split not in valid:
        raise DataError(f"{name}: unknown split {split!r}; expected one of {list(valid)}")


def build_source(data_config: Any, split: str) -> Source:
    """The `split` of the dataset that `data_config` (an ml_collections ConfigDict) names.

    Keys read: `name`; `dir` (file-backed and TFDS datasets); `data_seed` (default 0),
    `image_size` (default 28, 'shapes' only), `train_size` / `test_size` (override the default
    number of examples of embedded datasets).

    Raises:
        DataError: unknown dataset or split, missing or malformed files.
    """
    name = data_config.name
    configured_dir = data_config.get("dir", "") or ""
    if name in MNIST_FAMILY_COUNTS:
        return load_idx_split(resolve_data_dir(configured_dir, name), split, name)
    if name == "binarized_mnist":
        return load_binarized_mnist(resolve_data_dir(configured_dir, name), split)
    data_seed = data_config.get("data_seed", 0)
    num_examples = data_config.get(f"{split}_size", None)
    if name in TOY_2D_NAMES:
        return make_toy_2d(name, split, data_seed, num_examples)
    if name == "shapes":
        image_size = data_config.get("image_size", 28)
        return make_shapes(split, data_seed, image_size, num_examples)
    if name.startswith(TFDS_PREFIX):
        # Imported here: tensorflow_datasets takes about a second to import.
        from experiments.data.tfds_source import load_tfds_split

        return load_tfds_split(name.removeprefix(TFDS_PREFIX), split, configured_dir or None)
    raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(VALID_NAMES)}")


def build_batcher(
    data_config: Any, batch_size: int, seed: int, *, source: Source | None = None
) -> Batcher:
    """Batcher over the train split, binarising dynamically when `data_config.binarize` says so.

    Args:
        data_config: as for `build_source`, plus optional `binarize`: 'none' (default) or
            'dynamic' (each step samples x ~ Bernoulli(pixel intensity)).
        batch_size: global batch size.
        seed: fixes the example order and the binarisation noise.
        source: the train split, when the caller has already built it.
    """
    binarize = data_config.get("binarize", "none")
    if binarize not in BINARIZE_MODES:
        raise DataError(f"unknown data.binarize {binarize!r}; expected one of {BINARIZE_MODES}")
    transform = dynamic_binarize if binarize == "dynamic" else None
    source = build_source(data_config, "train") if source is None else source
    return Batcher(source, batch_size, seed, transform=transform)


def build_eval_source(data_config: Any, split: str) -> Source:
    """The eval split; with ``binarize='dynamic'``, binarised once with ``EVAL_BINARIZATION_SEED``."""
    source = build_source(data_config, split)
    if data_config.get("binarize", "none") != "dynamic":
        return source
    everything = source[np.arange(len(source))]
    binarized = dynamic_binarize(everything, seed=EVAL_BINARIZATION_SEED, step=0)
    return ArraySource(binarized, name=source.name, num_classes=source.num_classes)
