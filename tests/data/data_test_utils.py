"""Helpers of the data-layer tests: writers of small IDX / amat files, the shared data folder.

A plain module, not `tests/data/conftest.py`: the top-level tests import `conftest` by name, which
a second conftest module would shadow.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8) as an IDX file: magic 0x0000080<ndim>, big-endian dims, then the bytes."""
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(dim).to_bytes(4, "big") for dim in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_file(path: Path, data: bytes) -> Path:
    """Writes `data` to `path`, gzipped when the name ends in .gz; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def write_idx_split(
    folder: Path, split: str, images: np.ndarray, labels: np.ndarray, *, gz: bool = True
) -> tuple[Path, Path]:
    """Writes the IDX image and label files of `split` ('train' or 't10k' names) into `folder`."""
    prefix = {"train": "train", "test": "t10k"}[split]
    suffix = ".gz" if gz else ""
    images_path = write_file(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images))
    labels_path = write_file(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels))
    return images_path, labels_path


def amat_text(pixels: np.ndarray) -> bytes:
    """Rows of 784 0/1 values as .amat text: values separated by spaces, one row a line."""
    return "".join(
        " ".join(map(str, row)) + "\n" for row in pixels.reshape(len(pixels), -1)
    ).encode()


def shared_data_dir(name: str) -> Path:
    """`<repo>/../shared/data/<name>`; skips the calling test where it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"needs {path} (shared data folder, only on developer/CI machines)")
    return path
