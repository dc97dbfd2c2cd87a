"""Any prepared TFDS image dataset, read with random access through `tfds` data sources.

Reading needs the dataset prepared in the array_record format; TensorFlow is not needed. Nothing
here downloads: an unprepared dataset fails at once (tfds would otherwise retry DNS look-ups for
minutes on a machine without network).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from experiments.data.errors import DataError
from experiments.data.sources import pixels_to_unit_float

IMAGE_FEATURE = "image"
LABEL_FEATURE = "label"


def prepare_instructions(name: str, data_dir: str) -> str:
    """How to prepare `name` into `data_dir` on a machine with internet, for error messages."""
    return (
        f"On a machine with internet, run `tfds build {name} --data_dir {data_dir} "
        f'--file_format array_record`, or `python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder('{name}', data_dir='{data_dir}', "
        f"file_format='array_record').download_and_prepare()\"`, copy {data_dir} here if needed, "
        "and point --config.data.dir at it."
    )


def open_prepared_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The builder of `name` in `data_dir` (tfds' default when None), checked to be prepared.

    Raises:
        DataError: unknown dataset, or a dataset not prepared in `data_dir`.
    """
    shown_dir = data_dir or "the default TFDS data dir"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise DataError(
            f"TFDS dataset {name!r} not found: it is neither a registered TFDS dataset nor "
            f"prepared in {shown_dir}. Check the name (`tfds.list_builders()` lists them) and "
            "--config.data.dir."
        ) from error
    except (ValueError, AssertionError) as error:  # tfds asserts on an unknown version.
        raise DataError(f"TFDS dataset {name!r}: {error}") from error
    if not builder.is_prepared():
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir_root} (no "
            f"{builder.data_dir}/dataset_info.json). "
            + prepare_instructions(name, str(builder.data_dir_root))
        )
    return builder


def check_image_feature(name: str, features: Any) -> tuple[int, ...]:
    """Shape of one image of the dataset, after checking it is a fixed-shape uint8 'image'.

    Raises:
        DataError: no 'image' feature, or one that cannot be batched as uint8 pixels.
    """
    if IMAGE_FEATURE not in features.keys():
        raise DataError(
            f"TFDS dataset {name!r} has no {IMAGE_FEATURE!r} feature (features: "
            f"{sorted(features.keys())}); only image datasets are supported"
        )
    image = features[IMAGE_FEATURE]
    shape = tuple(image.shape)
    if len(shape) != 3 or None in shape or np.dtype(image.np_dtype) != np.uint8:
        raise DataError(
            f"TFDS dataset {name!r}: images must be uint8 of a fixed (H, W, C) shape to be "
            f"batched; got shape {shape}, dtype {image.np_dtype}"
        )
    return shape


class TfdsSource:
    """A TFDS split as a random-access source: 'x' float32 (N, H, W, C) in [0, 1], 'label' int32.

    Features other than 'image' and 'label' are dropped: they may be strings or ragged, which
    cannot be batched into device arrays.
    """

    def __init__(
        self,
        data_source: Sequence[dict[str, Any]],
        name: str,
        example_shape: tuple[int, ...],
        has_label: bool,
        num_classes: int | None,
    ) -> None:
        self._data_source = data_source
        self.name = name
        self._example_shape = example_shape
        self._has_label = has_label
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self._data_source)

    def __getitem__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        records = self._data_source.__getitems__(np.asarray(indices).ravel().tolist())
        batch = {"x": pixels_to_unit_float(np.stack([r[IMAGE_FEATURE] for r in records]))}
        if self._has_label:
            batch["label"] = np.array([r[LABEL_FEATURE] for r in records], np.int32)
        return batch

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one example's 'x'."""
        return self._example_shape

    def __repr__(self) -> str:
        return (
            f"TfdsSource(name={self.name!r}, len={len(self)}, example_shape={self.example_shape})"
        )


def load_tfds_split(name: str, split: str, data_dir: str | Path | None = None) -> TfdsSource:
    """Split `split` (any TFDS split string, e.g. 'train[:90%]') of the prepared dataset `name`.

    Args:
        name: TFDS name, optionally with config and version ('mnist', 'cifar10:3.0.2').
        split: TFDS split string.
        data_dir: folder holding prepared TFDS datasets; None for tfds' default.

    Raises:
        DataError: unknown or unprepared dataset, unknown split, not in a random-access format,
            or not an image dataset.
    """
    data_dir = str(Path(data_dir).expanduser()) if data_dir else None
    builder = open_prepared_builder(name, data_dir)
    features = builder.info.features
    example_shape = check_image_feature(name, features)
    try:
        data_source = builder.as_data_source(split=split)
    except NotImplementedError as error:  # Prepared as tfrecord, which has no random access.
        raise DataError(
            f"TFDS dataset {name!r} in {builder.data_dir} is not in a random-access format "
            f"(array_record): {error}\n" + prepare_instructions(name, str(builder.data_dir_root))
        ) from error
    except ValueError as error:  # Unknown split, malformed split string.
        raise DataError(f"TFDS dataset {name!r}, split {split!r}: {error}") from error
    label = features[LABEL_FEATURE] if LABEL_FEATURE in features.keys() else None
    return TfdsSource(
        data_source,
        name=f"tfds:{name}",
        example_shape=example_shape,
        has_label=label is not None,
        num_classes=getattr(label, "num_classes", None),
    )
