"""Reader for statically binarised MNIST (Larochelle & Murray) in `.amat` text format.

Files `binarized_mnist_{train,valid,test}.amat`, optionally gzipped: one image a line, 784 values
`0`/`1` in row-major 28x28 order separated by single spaces. Train has 50 000 lines, valid and test
10 000. There are no labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.data.errors import DataError
from experiments.data.idx import read_maybe_gzipped
from experiments.data.sources import ArraySource

IMAGE_SIDE = 28
VALUES_PER_LINE = IMAGE_SIDE * IMAGE_SIDE
# "v v ... v\n": one character per value plus one separator (a space, or the final newline).
CHARS_PER_LINE = 2 * VALUES_PER_LINE
SPLIT_ROWS = {"train": 50_000, "valid": 10_000, "test": 10_000}


def split_file_names(split: str) -> tuple[str, str]:
    """The gzipped and plain file names that may hold `split`."""
    stem = f"binarized_mnist_{split}.amat"
    return stem + ".gz", stem


def find_amat_file(folder: Path, split: str) -> Path:
    """The path of the split's `.amat.gz`, else of its `.amat`.

    Raises:
        DataError: the folder or both candidates are missing.
    """
    expected = ", ".join(name for s in SPLIT_ROWS for name in split_file_names(s)[:1])
    hint = (
        f"It should hold {expected} (or the same names without .gz); "
        "point --config.data.dir at that folder."
    )
    if not folder.is_dir():
        raise DataError(f"binarized_mnist data folder {folder} does not exist. {hint}")
    gz_name, plain_name = split_file_names(split)
    for candidate in (folder / gz_name, folder / plain_name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / gz_name} not found (nor {folder / plain_name}). {hint}")


def describe_first_bad_line(lines: list[bytes], file_name: str) -> str:
    """Message naming the first line (1-based) that is not 784 space-separated 0/1 values."""
    for line_number, line in enumerate(lines, start=1):
        values = line.split(b" ")
        if len(values) != VALUES_PER_LINE:
            return (
                f"{file_name}: line {line_number}: expected {VALUES_PER_LINE} values separated "
                f"by single spaces, got {len(values)}"
            )
        for position, value in enumerate(values, start=1):
            if value not in (b"0", b"1"):
                return (
                    f"{file_name}: line {line_number}, value {position}: expected 0 or 1, "
                    f"got {value[:20]!r}"
                )
    return f"{file_name}: malformed content"  # Unreachable when called on a failed fast parse.


def parse_amat(data: bytes, file_name: str) -> np.ndarray:
    """The (N, 784) uint8 0/1 matrix written as text in `data`.

    The fast path views the bytes as an (N, 1568) character grid: values sit at even columns,
    separators at odd ones. Only when that check fails are lines split, to say which one is bad.

    Raises:
        DataError: naming the file and the first malformed line.
    """
    if b"\r" in data:  # Tolerate files that went through a Windows checkout.
        data = data.replace(b"\r\n", b"\n")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    chars = np.frombuffer(data, np.uint8)
    if chars.size % CHARS_PER_LINE == 0:
        grid = chars.reshape(-1, CHARS_PER_LINE)
        values = grid[:, 0::2] - np.uint8(ord("0"))  # Wraps to >1 for any other character.
        separators = grid[:, 1::2]
        if (
            (values <= 1).all()
            and (separators[:, :-1] == ord(" ")).all()
            and (separators[:, -1] == ord("\n")).all()
        ):
            return values
    raise DataError(describe_first_bad_line(data[:-1].split(b"\n"), file_name))


def load_binarized_mnist(folder: str | Path, split: str, *, check_size: bool = True) -> ArraySource:
    """One split of binarised MNIST as 'x' float32 (N, 28, 28, 1) of 0/1, without labels.

    Args:
        folder: the folder holding the `.amat[.gz]` files.
        split: 'train', 'valid' or 'test'.
        check_size: require the published number of rows (50 000 / 10 000 / 10 000).

    Raises:
        DataError: missing folder or file, malformed line, truncated file or wrong row count.
    """
    if split not in SPLIT_ROWS:
        raise DataError(
            f"binarized_mnist: unknown split {split!r}; expected one of {list(SPLIT_ROWS)}"
        )
    path = find_amat_file(Path(folder).expanduser(), split)
    values = parse_amat(read_maybe_gzipped(path), path.name)
    if check_size and values.shape[0] != SPLIT_ROWS[split]:
        raise DataError(
            f"{path.name}: expected {SPLIT_ROWS[split]} lines for the {split} split, "
            f"got {values.shape[0]} (truncated or wrong file?)"
        )
    images = values.reshape(-1, IMAGE_SIDE, IMAGE_SIDE, 1).astype(np.float32)
    return ArraySource({"x": images}, name="binarized_mnist", num_classes=None)
