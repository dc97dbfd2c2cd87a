"""Reader for folders of MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST).

The four files share their names across these datasets, gzipped or not:
`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`,
`t10k-labels-idx1-ubyte[.gz]`. An IDX file is a big-endian header (magic number whose last byte is
the number of dimensions, then one uint32 per dimension) followed by the uint8 payload.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from experiments.data.errors import DataError
from experiments.data.sources import PixelSource

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
SPLIT_FILE_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_FAMILY_COUNTS = {
    name: {"train": 60_000, "test": 10_000} for name in ("mnist", "fashion_mnist", "kmnist")
}
MNIST_FAMILY_NUM_CLASSES = 10
_HEADER_DIM_BYTES = 4


def expected_files_text() -> str:
    """Human-readable list of the files an IDX folder must hold, for error messages."""
    names = [stem + ".gz" for stems in SPLIT_FILE_STEMS.values() for stem in stems]
    return ", ".join(names) + " (or the same names without .gz)"


def find_idx_file(folder: Path, stem: str) -> Path:
    """The path of `stem.gz` in `folder`, else of `stem` uncompressed.

    Raises:
        DataError: the folder or both candidate files are missing.
    """
    if not folder.is_dir():
        raise DataError(
            f"IDX data folder {folder} does not exist. It should hold {expected_files_text()}; "
            "point --config.data.dir at that folder."
        )
    for candidate in (folder / (stem + ".gz"), folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{folder / (stem + '.gz')} not found (nor {folder / stem}). The folder should hold "
        f"{expected_files_text()}; point --config.data.dir at the folder holding them."
    )


def read_maybe_gzipped(path: Path) -> bytes:
    """The bytes of `path`, gunzipped when its name ends in `.gz`.

    Raises:
        DataError: naming the file, when the gzip stream is truncated or corrupt.
    """
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as error:
        raise DataError(f"{path.name}: truncated gzip stream ({error})") from error
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path.name}: corrupt gzip stream ({error})") from error


def parse_idx(data: bytes, file_name: str, expected_magic: int) -> np.ndarray:
    """The uint8 array stored in the IDX bytes `data`, shaped by its header.

    Args:
        data: the whole uncompressed file.
        file_name: used in error messages only.
        expected_magic: `IMAGES_MAGIC` or `LABELS_MAGIC`.

    Raises:
        DataError: wrong magic number, or a payload shorter or longer than the header announces.
    """
    kind = "pixel" if expected_magic == IMAGES_MAGIC else "label"
    if len(data) < 4:
        raise DataError(f"{file_name}: truncated: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{file_name}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(IDX unsigned-byte {kind} file); the file is not in IDX format or is the wrong file"
        )
    num_dims = expected_magic & 0xFF
    header_size = 4 + _HEADER_DIM_BYTES * num_dims
    if len(data) < header_size:
        raise DataError(
            f"{file_name}: truncated: header needs {header_size} bytes, file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=num_dims, offset=4))
    expected_size = math.prod(dims)
    payload_size = len(data) - header_size
    if payload_size < expected_size:
        raise DataError(
            f"{file_name}: truncated: expected {expected_size} {kind} bytes "
            f"(dimensions {dims}), got {payload_size}"
        )
    if payload_size > expected_size:
        raise DataError(
            f"{file_name}: {payload_size - expected_size} unexpected bytes after the "
            f"{expected_size} {kind} bytes announced by the header (dimensions {dims})"
        )
    return np.frombuffer(data, np.uint8, count=expected_size, offset=header_size).reshape(dims)


def check_counts(name: str, split: str, num_images: int, num_labels: int, files: str) -> None:
    """Raises DataError when images and labels disagree, or a known dataset has the wrong size."""
    if num_images != num_labels:
        raise DataError(f"{files}: {num_images} images but {num_labels} labels")
    expected = MNIST_FAMILY_COUNTS.get(name, {}).get(split)
    if expected is not None and num_images != expected:
        raise DataError(
            f"{files}: {name} {split} should have {expected} examples, got {num_images}"
        )


def load_idx_split(folder: str | Path, split: str, name: str) -> PixelSource:
    """One split of an IDX dataset folder: batches of 'x' float32 (N, H, W, 1) in [0, 1] and 'label'
    int32 (the pixels stay uint8 in memory, ``PixelSource``).

    Args:
        folder: the folder holding the four IDX files.
        split: 'train' or 'test'.
        name: dataset name; for mnist, fashion_mnist and kmnist the split sizes (60000/10000) and
            the label range (0-9) are checked. Other names take `max(label) + 1` classes.

    Raises:
        DataError: missing folder or file, bad header, truncated or inconsistent files.
    """
    if split not in SPLIT_FILE_STEMS:
        raise DataError(
            f"{name}: unknown split {split!r}; IDX folders hold {list(SPLIT_FILE_STEMS)}"
        )
    folder = Path(folder).expanduser()
    images_stem, labels_stem = SPLIT_FILE_STEMS[split]
    images_path = find_idx_file(folder, images_stem)
    labels_path = find_idx_file(folder, labels_stem)
    images = parse_idx(read_maybe_gzipped(images_path), images_path.name, IMAGES_MAGIC)
    labels = parse_idx(read_maybe_gzipped(labels_path), labels_path.name, LABELS_MAGIC)
    files = f"{images_path.name} / {labels_path.name} in {folder}"
    check_counts(name, split, images.shape[0], labels.shape[0], files)
    if name in MNIST_FAMILY_COUNTS:
        num_classes = MNIST_FAMILY_NUM_CLASSES
        if labels.size and labels.max() >= num_classes:
            raise DataError(f"{labels_path.name}: label {labels.max()} out of range 0-9")
    else:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    return PixelSource(
        {"x": images[..., np.newaxis], "label": labels.astype(np.int32)},
        name=name,
        num_classes=num_classes,
    )
