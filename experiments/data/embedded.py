"""Procedural datasets that need no file or network, each a pure function of a `data_seed`.

- `ring2d`: 8 Gaussians on a circle of radius 2, std 0.02 (VEEGAN, PacGAN).
- `grid2d`: 25 Gaussians centred on {-4, -2, 0, 2, 4}², std 0.05.
  2-D points are float32 (2,) in raw coordinates; 'label' is the index of the mode drawn.
- `shapes`: dSprites-style images of a white square, ellipse or heart on black, with factors
  scale, orientation and position drawn uniformly at random; 'label' is the shape index and
  'factors' (N, 5) int32 holds the index of every factor (order: `SHAPES_FACTOR_NAMES`).

Each split draws from its own stream, seeded by (data_seed, split name), so train and test differ
and neither depends on the other's size.
"""

from __future__ import annotations

import zlib

import numpy as np

from experiments.data.errors import DataError
from experiments.data.sources import ArraySource

TOY_2D_NAMES = ("ring2d", "grid2d")
RING_NUM_MODES = 8
RING_RADIUS = 2.0
RING_STD = 0.02
GRID_COORDINATES = (-4.0, -2.0, 0.0, 2.0, 4.0)
GRID_STD = 0.05

SHAPE_NAMES = ("square", "ellipse", "heart")
SHAPES_FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SHAPES_FACTOR_SIZES = (len(SHAPE_NAMES), 6, 40, 16, 16)
SHAPES_MIN_SCALE = 0.5
# Radius, as a fraction of the image side, of the circle that holds a shape at scale 1. Centres
# stay this far from the border, so every shape at every scale and rotation lies inside the image.
SHAPES_MAX_RADIUS_FRACTION = 0.25
# Heart curve (x² + y² - 1)³ ≤ x² y³ spans x in ±1.14, y in [-1, 1.24]: shifting it by this much
# and dividing by this scale puts it inside the unit disc (farthest point at radius 0.97).
_HEART_Y_SHIFT = 0.23
_HEART_SCALE = 1.3
_ELLIPSE_MINOR_AXIS = 0.5
_SQUARE_HALF_SIDE = float(np.sqrt(0.5))  # Corners on the unit circle.
# Subpixel hits are counted in uint8, so a pixel holds at most 255 subpixels.
_MAX_SUPERSAMPLE = 15
# Subpixel values one rendering chunk processes: small enough to stay in cache.
_RENDER_CHUNK_VALUES = 1 << 21

DEFAULT_SPLIT_SIZES = {
    "ring2d": {"train": 100_000, "test": 10_000},
    "grid2d": {"train": 100_000, "test": 10_000},
    "shapes": {"train": 20_000, "test": 2_000},
}
# Mixed into every seed so these streams differ from any other use of the same data_seed.
_TOY_2D_PURPOSE = 0x70792D32
_SHAPES_PURPOSE = 0x53484150


def split_rng(data_seed: int, split: str, purpose: int) -> np.random.Generator:
    """Generator for one split; crc32 keeps the split's contribution stable across processes."""
    return np.random.default_rng([data_seed, zlib.crc32(split.encode()), purpose])


def split_size(name: str, split: str, num_examples: int | None) -> int:
    """`num_examples` if given, else the default size of `split` for dataset `name`."""
    if num_examples is not None:
        return num_examples
    sizes = DEFAULT_SPLIT_SIZES[name]
    if split not in sizes:
        raise DataError(f"{name}: unknown split {split!r}; expected one of {list(sizes)}")
    return sizes[split]


def toy_modes(name: str) -> tuple[np.ndarray, float]:
    """Mode centres (K, 2) float32 and the per-coordinate std of a 2-D toy mixture.

    The label of a point is the row of its mode in `centres`.
    """
    if name == "ring2d":
        angles = 2 * np.pi * np.arange(RING_NUM_MODES) / RING_NUM_MODES
        centres = RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return centres.astype(np.float32), RING_STD
    if name == "grid2d":
        xs, ys = np.meshgrid(GRID_COORDINATES, GRID_COORDINATES, indexing="ij")
        return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32), GRID_STD
    raise DataError(f"unknown 2-D toy dataset {name!r}; expected one of {list(TOY_2D_NAMES)}")


def make_toy_2d(
    name: str, split: str, data_seed: int = 0, num_examples: int | None = None
) -> ArraySource:
    """A split of 'ring2d' or 'grid2d': modes drawn uniformly, then isotropic Gaussian noise."""
    centres, std = toy_modes(name)
    size = split_size(name, split, num_examples)
    rng = split_rng(data_seed, split, _TOY_2D_PURPOSE)
    labels = rng.integers(len(centres), size=size)
    noise = rng.standard_normal((size, 2), dtype=np.float32)
    points = centres[labels] + np.float32(std) * noise
    return ArraySource(
        {"x": points, "label": labels.astype(np.int32)},
        name=name,
        num_classes=len(centres),
    )


def shapes_factor_values(image_size: int) -> dict[str, np.ndarray]:
    """The value of every factor index: float32 pixels for radius and positions, float64 radians.

    'radius' is the radius of the disc holding the shape (scale × maximal radius); positions are
    the shape centre in continuous pixel coordinates (pixel i spans [i, i + 1)).
    """
    max_radius = SHAPES_MAX_RADIUS_FRACTION * image_size
    _, num_scales, num_orientations, num_x, num_y = SHAPES_FACTOR_SIZES
    return {
        "radius": max_radius * np.linspace(SHAPES_MIN_SCALE, 1.0, num_scales, dtype=np.float32),
        "orientation": 2 * np.pi / num_orientations * np.arange(num_orientations),
        "pos_x": np.linspace(max_radius, image_size - max_radius, num_x, dtype=np.float32),
        "pos_y": np.linspace(max_radius, image_size - max_radius, num_y, dtype=np.float32),
    }


# Per shape: how the shape frame is stretched (u, v) and shifted (v) before its inside test, so
# that the tests below can assume unit constants.
_SHAPE_FRAME = {
    "square": (1 / _SQUARE_HALF_SIDE, 1 / _SQUARE_HALF_SIDE, 0.0),
    "ellipse": (1.0, 1 / _ELLIPSE_MINOR_AXIS, 0.0),
    "heart": (_HEART_SCALE, _HEART_SCALE, _HEART_Y_SHIFT),
}


def inside_shape(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v), in the shape's stretched frame (`_SHAPE_FRAME`), are inside it.

    Overwrites `u` and `v`: they are large temporaries, and reusing them saves memory traffic.
    """
    if shape == "square":
        return np.maximum(np.abs(u, out=u), np.abs(v, out=v), out=u) <= 1
    if shape == "ellipse":
        return np.add(np.square(u, out=u), np.square(v, out=v), out=u) <= 1
    # Heart curve: (x² + y² - 1)³ ≤ x² y³.
    y3 = np.square(v) * v
    x2 = np.square(u, out=u)
    lhs = x2 + np.square(v, out=v)
    lhs -= 1
    lhs3 = np.square(lhs) * lhs
    return lhs3 <= np.multiply(x2, y3, out=y3)


def count_subpixel_hits(inside: np.ndarray, supersample: int) -> np.ndarray:
    """Number of True subpixels in each supersample x supersample block of `inside` (n, H, W).

    Strided additions are several times faster than `sum(axis=(2, 4))` on a reshaped view.
    """
    inside = inside.view(np.uint8)
    rows = inside[:, 0::supersample, :].copy()
    for offset in range(1, supersample):
        rows += inside[:, offset::supersample, :]
    hits = rows[:, :, 0::supersample].copy()
    for offset in range(1, supersample):
        hits += rows[:, :, offset::supersample]
    return hits


def shapes_window_size(image_size: int) -> int:
    """Side, in pixels, of a square window that can hold any shape wherever it lies."""
    max_diameter = 2 * SHAPES_MAX_RADIUS_FRACTION * image_size
    return min(image_size, int(np.ceil(max_diameter)) + 1)


def column(values: np.ndarray) -> np.ndarray:
    """(n,) → (n, 1, 1), to broadcast one value per example over an image."""
    return values[:, np.newaxis, np.newaxis]


def render_windows(
    factors: np.ndarray, image_size: int, supersample: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coverage of each shape in a window around it, and the windows' pixel origins.

    Rendering only the window around each shape, not the whole image, cuts the work by the ratio
    of their areas (3.5x for 28x28 images).

    Returns:
        coverage (n, w, w) float32 in [0, 1], top rows (n,) and left columns (n,) int.
    """
    values = shapes_factor_values(image_size)
    window = shapes_window_size(image_size)
    max_radius = values["radius"][-1]
    centre_x = values["pos_x"][factors[:, 3]]
    centre_y = values["pos_y"][factors[:, 4]]
    left = np.clip(np.floor(centre_x - max_radius).astype(int), 0, image_size - window)
    top = np.clip(np.floor(centre_y - max_radius).astype(int), 0, image_size - window)
    offsets = ((np.arange(window * supersample) + 0.5) / supersample).astype(np.float32)
    coverage = np.empty((len(factors), window, window), np.float32)
    for shape_index, shape in enumerate(SHAPE_NAMES):
        rows = np.flatnonzero(factors[:, 0] == shape_index)
        if rows.size == 0:
            continue
        inverse_radius = column(1 / values["radius"][factors[rows, 1]])
        angle = values["orientation"][factors[rows, 2]]
        # Shape frame: origin at the centre, v pointing up (rows grow downwards), unit = radius.
        dx = left[rows, None, None] + offsets[None, None, :] - column(centre_x[rows])
        dy = column(centre_y[rows]) - top[rows, None, None] - offsets[None, :, None]
        dx *= inverse_radius
        dy *= inverse_radius
        stretch_u, stretch_v, shift_v = _SHAPE_FRAME[shape]
        # cos and sin in float64, then rounded: float64 versions differ between CPUs by an ulp at
        # most, which rounding to float32 hides; numpy's float32 SIMD versions may not agree.
        cos = column(np.cos(angle).astype(np.float32))
        sin = column(np.sin(angle).astype(np.float32))
        # Rotating the frame by -angle draws the shape rotated by +angle (counter-clockwise). The
        # factors multiply the small (n, 1, W) and (n, H, 1) arrays, so each full-size (n, H, W)
        # coordinate costs one addition.
        u = (stretch_u * cos) * dx + (stretch_u * sin) * dy
        v = ((stretch_v * cos) * dy + shift_v) - (stretch_v * sin) * dx
        hits = count_subpixel_hits(inside_shape(shape, u, v), supersample)
        coverage[rows] = hits * np.float32(1 / supersample**2)
    return coverage, top, left


def render_shapes(factors: np.ndarray, image_size: int = 28, supersample: int = 4) -> np.ndarray:
    """Images (N, S, S, 1) float32 in [0, 1] of the shapes whose factor indices are `factors`.

    Args:
        factors: (N, 5) integer indices, columns in `SHAPES_FACTOR_NAMES` order, each below the
            matching `SHAPES_FACTOR_SIZES`.
        image_size: side S of the square images.
        supersample: each pixel is the fraction of supersample² subpixel centres inside the shape,
            which anti-aliases edges.
    """
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(SHAPES_FACTOR_SIZES):
        raise ValueError(f"factors must be (N, {len(SHAPES_FACTOR_SIZES)}), got {factors.shape}")
    if (factors < 0).any() or (factors >= np.array(SHAPES_FACTOR_SIZES)).any():
        raise ValueError(f"factor indices must lie below {SHAPES_FACTOR_SIZES}")
    if not 1 <= supersample <= _MAX_SUPERSAMPLE:
        raise ValueError(f"supersample must lie in [1, {_MAX_SUPERSAMPLE}], got {supersample}")
    window = shapes_window_size(image_size)
    chunk = max(1, _RENDER_CHUNK_VALUES // (window * supersample) ** 2)
    images = np.zeros((len(factors), image_size, image_size, 1), np.float32)
    within_window = np.arange(window)
    for start in range(0, len(factors), chunk):
        coverage, top, left = render_windows(
            factors[start : start + chunk], image_size, supersample
        )
        examples = np.arange(start, start + len(coverage))[:, np.newaxis, np.newaxis]
        rows = (top[:, np.newaxis] + within_window)[:, :, np.newaxis]
        columns = (left[:, np.newaxis] + within_window)[:, np.newaxis, :]
        images[examples, rows, columns, 0] = coverage
    return images


def make_shapes(
    split: str,
    data_seed: int = 0,
    image_size: int = 28,
    num_examples: int | None = None,
    supersample: int = 4,
) -> ArraySource:
    """A split of 'shapes': factors drawn uniformly and independently per example, then rendered."""
    size = split_size("shapes", split, num_examples)
    rng = split_rng(data_seed, split, _SHAPES_PURPOSE)
    factors = rng.integers(0, SHAPES_FACTOR_SIZES, size=(size, len(SHAPES_FACTOR_SIZES)))
    factors = factors.astype(np.int32)
    return ArraySource(
        {
            "x": render_shapes(factors, image_size, supersample),
            "label": factors[:, 0].copy(),
            "factors": factors,
        },
        name="shapes",
        num_classes=len(SHAPE_NAMES),
    )
