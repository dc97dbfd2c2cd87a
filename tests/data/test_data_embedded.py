"""Procedural datasets: mixture statistics, shape rendering geometry, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from experiments.data import DataError, toy_modes
from experiments.data.embedded import (
    SHAPE_NAMES,
    SHAPES_FACTOR_NAMES,
    SHAPES_FACTOR_SIZES,
    make_shapes,
    make_toy_2d,
    render_shapes,
    shapes_factor_values,
)


def everything(source):
    return source[np.arange(len(source))]


def test_ring_modes():
    centres, std = toy_modes("ring2d")
    assert centres.shape == (8, 2) and centres.dtype == np.float32 and std == 0.02
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 2.0, rtol=1e-6)
    np.testing.assert_allclose(centres[2], [0.0, 2.0], atol=1e-6)  # Modes 45° apart from (2, 0).


def test_grid_modes():
    centres, std = toy_modes("grid2d")
    assert centres.shape == (25, 2) and std == 0.05
    expected = set(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2))
    assert {tuple(map(float, c)) for c in centres} == expected


def test_unknown_toy_name():
    with pytest.raises(DataError, match=r"unknown 2-D toy dataset 'spiral'"):
        toy_modes("spiral")


@pytest.mark.parametrize("name", ["ring2d", "grid2d"])
def test_toy_mixture_statistics(name):
    data = everything(make_toy_2d(name, "train", data_seed=3))
    x, labels = data["x"], data["label"]
    centres, std = toy_modes(name)
    num_modes = len(centres)
    assert x.shape == (100_000, 2) and x.dtype == np.float32 and labels.dtype == np.int32
    counts = np.bincount(labels, minlength=num_modes)
    assert len(counts) == num_modes
    # Multinomial counts: within 5 standard deviations of uniform.
    expected = len(x) / num_modes
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    for mode in range(num_modes):
        points = x[labels == mode]
        np.testing.assert_allclose(
            points.mean(axis=0), centres[mode], atol=5 * std / np.sqrt(len(points))
        )
        np.testing.assert_allclose(points.std(axis=0), std, rtol=0.05)
    # Modes are far apart relative to std: every point is nearest to its own mode.
    nearest = np.argmin(np.linalg.norm(x[:, None, :] - centres[None], axis=2), axis=1)
    np.testing.assert_array_equal(nearest, labels)


def test_toy_determinism_and_splits():
    a = everything(make_toy_2d("ring2d", "test", data_seed=0))
    b = everything(make_toy_2d("ring2d", "test", data_seed=0))
    other_seed = everything(make_toy_2d("ring2d", "test", data_seed=1))
    train = everything(make_toy_2d("ring2d", "train", data_seed=0, num_examples=10_000))
    assert len(a["x"]) == 10_000
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], other_seed["x"])
    assert not np.array_equal(a["x"], train["x"])


def test_toy_unknown_split():
    with pytest.raises(DataError, match=r"unknown split 'valid'"):
        make_toy_2d("grid2d", "valid")


def test_shapes_layout():
    source = make_shapes("test", data_seed=0, num_examples=2_000)
    data = everything(source)
    x, labels, factors = data["x"], data["label"], data["factors"]
    assert source.example_shape == (28, 28, 1) and source.num_classes == 3
    assert x.shape == (2_000, 28, 28, 1) and x.dtype == np.float32
    assert labels.dtype == np.int32 and factors.dtype == np.int32
    assert factors.shape == (2_000, len(SHAPES_FACTOR_NAMES))
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(labels, factors[:, 0])
    for column, size in enumerate(SHAPES_FACTOR_SIZES):
        # Every value of every factor is drawn (2000 draws, at most 40 values).
        np.testing.assert_array_equal(np.unique(factors[:, column]), np.arange(size))
    # Anti-aliased: many pixels are partially covered, every image shows a shape.
    assert np.mean((x > 0) & (x < 1)) > 0.01
    assert np.all(x.sum(axis=(1, 2, 3)) > 5)


def test_shapes_default_sizes_and_determinism():
    train = make_shapes("train")
    assert len(train) == 20_000 and len(make_shapes("test", num_examples=None)) == 2_000
    first = make_shapes("test", data_seed=5, num_examples=300)
    again = make_shapes("test", data_seed=5, num_examples=300)
    other = make_shapes("test", data_seed=6, num_examples=300)
    np.testing.assert_array_equal(everything(first)["x"], everything(again)["x"])
    assert not np.array_equal(everything(first)["factors"], everything(other)["factors"])
    assert not np.array_equal(everything(first)["x"], everything(other)["x"])


def factors_of(shape, scale, orientation, pos_x, pos_y):
    return np.array([[SHAPE_NAMES.index(shape), scale, orientation, pos_x, pos_y]])


@pytest.mark.parametrize(("pos_x", "pos_y"), [(0, 0), (15, 15), (3, 12)])
@pytest.mark.parametrize("orientation", [0, 7, 13])
def test_square_and_ellipse_area_and_centroid(pos_x, pos_y, orientation):
    image_size = 40
    values = shapes_factor_values(image_size)
    radius = values["radius"][5]
    expected_areas = {"square": 2 * radius**2, "ellipse": np.pi * radius**2 / 2}
    for shape, expected_area in expected_areas.items():
        image = render_shapes(factors_of(shape, 5, orientation, pos_x, pos_y), image_size)[
            0, ..., 0
        ]
        # Sum of coverage = area in pixels: nothing is clipped at the extreme positions. Point
        # sampling at 1/4 px moves an axis-aligned edge by up to 1/8 px, hence the tolerance.
        np.testing.assert_allclose(image.sum(), expected_area, rtol=0.03)
        # Symmetric shapes: the centroid is the centre (x: column, y: row, pixel i at i + 0.5).
        coords = np.arange(image_size) + 0.5
        centroid_x = (image.sum(axis=0) * coords).sum() / image.sum()
        centroid_y = (image.sum(axis=1) * coords).sum() / image.sum()
        np.testing.assert_allclose(centroid_x, values["pos_x"][pos_x], atol=0.03)
        np.testing.assert_allclose(centroid_y, values["pos_y"][pos_y], atol=0.03)


def test_orientation_rotates_counter_clockwise():
    flat = render_shapes(factors_of("ellipse", 5, 0, 8, 8))[0, ..., 0]
    upright = render_shapes(factors_of("ellipse", 5, 10, 8, 8))[0, ..., 0]  # 10/40 turn = 90°.
    width = lambda image: np.count_nonzero(image.sum(axis=0) > 0.5)
    height = lambda image: np.count_nonzero(image.sum(axis=1) > 0.5)
    assert width(flat) > 1.6 * height(flat)
    assert height(upright) > 1.6 * width(upright)
    # At 45° the ellipse's mass lies along the rising diagonal (up-right / down-left).
    tilted = render_shapes(factors_of("ellipse", 5, 5, 8, 8))[0, ..., 0]
    centred = np.arange(28) + 0.5 - shapes_factor_values(28)["pos_x"][8]
    columns, rows = np.meshgrid(centred, centred)
    assert (tilted * columns * -rows).sum() > 0  # Up is -row.


def test_scale_grows_area_quadratically():
    areas = [render_shapes(factors_of("heart", s, 0, 8, 8), 64)[0].sum() for s in (0, 5)]
    np.testing.assert_allclose(areas[1] / areas[0], 4.0, rtol=0.02)  # Scale 0.5 → 1.0.


def test_heart_points_down_when_upright():
    heart = render_shapes(factors_of("heart", 5, 0, 8, 8), 64)[0, ..., 0]
    rows = np.flatnonzero(heart.sum(axis=1) > 0)
    middle = (rows[0] + rows[-1]) / 2
    # Lobes on top, tip at the bottom: the widest row and most of the mass are above the middle.
    assert np.argmax(heart.sum(axis=1)) < middle
    assert heart[: int(middle)].sum() > 1.2 * heart[int(middle) + 1 :].sum()


def test_render_rejects_out_of_range_factors():
    with pytest.raises(ValueError, match=r"below"):
        render_shapes(np.array([[0, 6, 0, 0, 0]]))
