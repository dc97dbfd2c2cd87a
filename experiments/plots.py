"""Line plots with a band, drawn with Pillow (no plotting library): a metric against the step, one
line per setting, its band over seeds."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 80, 250, 40, 50  # margins around the axes
# Matplotlib's "tab10" colours.
COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
BAND_ALPHA = 56
MAX_LABEL = 34


@dataclass(frozen=True)
class Series:
    """One line: ``y[i]`` at ``x[i]`` and, where ``low[i]``/``high[i]`` are not None, a band."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    low: tuple[float | None, ...]
    high: tuple[float | None, ...]


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering ``[low, high]``."""
    span = high - low
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value = first + len(ticks) * step
    return ticks


def tick_text(value: float) -> str:
    return f"{value:.6g}"


def padded_range(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high == low:
        pad = abs(low) * 0.05 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


def line_plot(path: str | os.PathLike, title: str, series: list[Series], x_label: str) -> None:
    """Writes a PNG of ``series`` (finite points only) to ``path`` (atomically)."""
    image = Image.new("RGBA", (WIDTH, HEIGHT), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    small, large = font(12), font(15)
    xs = [x for s in series for x in s.x]
    ys = [v for s in series for v in (*s.y, *s.low, *s.high) if v is not None and math.isfinite(v)]
    x0, x1 = padded_range(xs or [0.0])
    y0, y1 = padded_range(ys or [0.0])
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM

    def px(x):
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(y):
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    for tick in nice_ticks(y0, y1):
        draw.line([(left, py(tick)), (right, py(tick))], fill=(225, 225, 225))
        draw.text((left - 6, py(tick)), tick_text(tick), fill="black", font=small, anchor="rm")
    for tick in nice_ticks(x0, x1):
        draw.line([(px(tick), top), (px(tick), bottom)], fill=(235, 235, 235))
        draw.text((px(tick), bottom + 6), tick_text(tick), fill="black", font=small, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, 12), title, fill="black", font=large, anchor="mt")
    draw.text(((left + right) / 2, HEIGHT - 8), x_label, fill="black", font=small, anchor="mb")

    for index, line in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        band = [
            (x, lo, hi)
            for x, lo, hi in zip(line.x, line.low, line.high, strict=True)
            if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
        ]
        if len(band) >= 2:
            overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
            outline = [(px(x), py(hi)) for x, _, hi in band]
            outline += [(px(x), py(lo)) for x, lo, _ in reversed(band)]
            ImageDraw.Draw(overlay).polygon(outline, fill=(*colour, BAND_ALPHA))
            image.alpha_composite(overlay)
            draw = ImageDraw.Draw(image)
        elif len(band) == 1:
            x, lo, hi = band[0]
            draw.line([(px(x), py(lo)), (px(x), py(hi))], fill=colour, width=1)
        points = [(px(x), py(y)) for x, y in zip(line.x, line.y, strict=True) if math.isfinite(y)]
        if len(points) >= 2:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        legend_y = top + 8 + 20 * index
        draw.rectangle([right + 16, legend_y, right + 30, legend_y + 12], fill=colour)
        label = line.label if len(line.label) <= MAX_LABEL else line.label[: MAX_LABEL - 1] + "…"
        draw.text((right + 36, legend_y + 6), label, fill="black", font=small, anchor="lm")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    image.convert("RGB").save(temporary, format="PNG")
    os.replace(temporary, path)
