"""Toy 2-D metrics (modes covered, high-quality fraction) and the scatter plot."""

import jax.numpy as jnp
import numpy as np

from experiments.data import toy_modes
from gan_jax import toy


def test_modes_and_high_quality_fraction():
    centres, std = toy_modes("ring2d")
    # 1000 samples: 120 on each of modes 0-6 (2.9 std off the centre: still high quality),
    # 5 on mode 7 (0.5% < 1%: not covered) and 155 far away.
    offset = np.array([2.9 * std, 0.0], np.float32)
    points = [np.repeat(centres[k : k + 1] + offset, 120, axis=0) for k in range(7)]
    points.append(np.repeat(centres[7:8], 5, axis=0))
    points.append(np.zeros((155, 2), np.float32))
    samples = jnp.asarray(np.concatenate(points))
    metrics = toy.eval_metrics(samples, centres, std)
    assert set(metrics) == {"high_quality"} | {f"hq_mode_{k:02d}" for k in range(8)}
    averages = {name: float(np.mean(value)) for name, value in metrics.items()}
    np.testing.assert_allclose(averages["hq_mode_00"], 0.12)
    summary = toy.summarize(averages, len(centres))
    assert summary["modes_covered"] == 7.0
    np.testing.assert_allclose(summary["high_quality_fraction"], (7 * 120 + 5) / 1000, rtol=1e-6)


def test_just_outside_three_std_is_not_high_quality():
    centres, std = toy_modes("grid2d")
    samples = jnp.asarray(centres[:2] + np.array([[3.1 * std, 0.0], [0.0, 2.9 * std]]))
    np.testing.assert_array_equal(toy.eval_metrics(samples, centres, std)["high_quality"], [0, 1])


def test_scatter_plot_marks_samples_and_modes():
    centres, std = toy_modes("ring2d")
    samples = jnp.asarray(np.repeat(np.array([[0.0, 0.0]], np.float32), 50, axis=0))
    image = np.asarray(toy.scatter_plot(samples, centres, std, size=64))
    assert image.shape == (1, 64, 64, 3) and image.min() >= 0 and image.max() <= 1
    centre = image[0, 32, 32]  # the samples at the origin: blue
    assert centre[2] > centre[0] + 0.3
    red = (image[0, ..., 0] > 0.8) & (image[0, ..., 1] < 0.2)
    assert red.sum() >= 8  # mode circles
    np.testing.assert_allclose(image[0, 0, 0], [1.0, 1.0, 1.0])  # white background
