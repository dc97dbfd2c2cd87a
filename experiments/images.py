"""PNG grids of image batches."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image


def grid_image(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tiles ``images`` (NHWC floats in [0, 1], C = 1 or 3) into one HWC uint8 image."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.ones(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        np.float32,
    )
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[top : top + height, left : left + width] = image
    return np.round(canvas * 255).astype(np.uint8)


def save_grid(
    path: str | os.PathLike, images: np.ndarray, columns: int | None = None
) -> np.ndarray:
    """Writes ``images`` as one PNG grid and returns the grid (HWC uint8)."""
    grid = grid_image(images, columns)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return grid
