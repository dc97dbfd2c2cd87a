"""Metrics and pictures of GANs on 2-D mixtures of Gaussians (``ring2d``, ``grid2d``).

As in VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018): a sample is *high quality* when
it lies within 3 standard deviations of the nearest mode centre (Euclidean distance ≤ 3σ), and a mode
is *covered* when at least 1% of all samples are high-quality samples around it.

``eval_metrics`` gives per-sample indicators that the engine averages over the eval split (one
sample per eval example: 10 000 for the toys' test splits); ``summarize`` turns the averages into
``modes_covered`` and ``high_quality_fraction``. ``scatter_plot`` renders samples over the mode
centres as an RGB image, in JAX (a scatter-add of the points into pixels).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

HIGH_QUALITY_STDS = 3.0
COVERED_FRACTION = 0.01
HIGH_QUALITY = "high_quality"
MODE_PREFIX = "hq_mode_"
PLOT_SIZE = 256
PLOT_MARGIN = 1.0  # beyond the outermost mode centre, in data units
SAMPLE_COLOUR = (0.12, 0.35, 0.85)
MODE_COLOUR = (0.85, 0.1, 0.1)


def mode_metric_name(index: int) -> str:
    return f"{MODE_PREFIX}{index:02d}"


def eval_metrics(samples: jax.Array, centres: np.ndarray, std: float) -> dict[str, jax.Array]:
    """Per-sample ``(batch,)`` float32 indicators: ``high_quality`` and, for each mode k,
    ``hq_mode_k`` (high quality and nearest to mode k)."""
    squared = jnp.sum(jnp.square(samples[:, None, :] - jnp.asarray(centres)[None]), axis=-1)
    nearest = jnp.argmin(squared, axis=1)
    good = jnp.min(squared, axis=1) <= (HIGH_QUALITY_STDS * std) ** 2
    metrics = {HIGH_QUALITY: good.astype(jnp.float32)}
    for index in range(len(centres)):
        metrics[mode_metric_name(index)] = (good & (nearest == index)).astype(jnp.float32)
    return metrics


def summarize(averages: dict[str, float], num_modes: int) -> dict[str, float]:
    """``modes_covered`` (modes with ≥ 1% of the samples high quality around them) and
    ``high_quality_fraction``, from the split-wide averages of ``eval_metrics``."""
    fractions = [averages[mode_metric_name(index)] for index in range(num_modes)]
    return {
        "modes_covered": float(sum(fraction >= COVERED_FRACTION for fraction in fractions)),
        "high_quality_fraction": float(averages[HIGH_QUALITY]),
    }


def plot_extent(centres: np.ndarray) -> float:
    """Half the side of the square the plot shows, centred on the origin."""
    return float(np.max(np.abs(centres))) + PLOT_MARGIN


def scatter_plot(
    points: jax.Array, centres: np.ndarray, std: float, size: int = PLOT_SIZE
) -> jax.Array:
    """``(1, size, size, 3)`` float32 image in [0, 1]: samples in blue (darker where denser) on white,
    each mode's 3σ circle (at least 3 px) in red. Points outside the square are left out."""
    extent = plot_extent(centres)
    scale = size / (2 * extent)
    columns = jnp.floor((points[:, 0] + extent) * scale).astype(jnp.int32)
    rows = jnp.floor((extent - points[:, 1]) * scale).astype(jnp.int32)
    inside = (columns >= 0) & (columns < size) & (rows >= 0) & (rows < size)
    flat = jnp.where(inside, rows * size + columns, 0)
    counts = jnp.zeros(size * size, jnp.float32).at[flat].add(inside.astype(jnp.float32))
    density = (1.0 - jnp.exp(-counts / 2.0)).reshape(size, size, 1)
    image = (1.0 - density) + density * jnp.asarray(SAMPLE_COLOUR)
    pixel_centres = (jnp.arange(size) + 0.5) / scale
    xs, ys = pixel_centres[None, :] - extent, extent - pixel_centres[:, None]
    radius = max(HIGH_QUALITY_STDS * std * scale, 3.0) / scale
    ring = jnp.zeros((size, size), bool)
    for cx, cy in np.asarray(centres, np.float64):
        distance = jnp.sqrt(jnp.square(xs - cx) + jnp.square(ys - cy))
        ring |= jnp.abs(distance - radius) * scale < 0.75
    image = jnp.where(ring[..., None], jnp.asarray(MODE_COLOUR), image)
    return image[None].astype(jnp.float32)
