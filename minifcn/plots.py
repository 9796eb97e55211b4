"""Training pictures drawn with Pillow alone: loss and mean IU curves, and sample strips.

matplotlib is an extra (for the lessons); the training command needs
neither it nor a display, so its two pictures are drawn here directly.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .viz import colorize


def _panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    xs: Sequence[float],
    ys: Sequence[float],
    title: str,
    colour: tuple[int, int, int],
    y_range: tuple[float, float] | None = None,
) -> None:
    """One line chart inside ``box`` (left, top, right, bottom), axes labelled with their ranges."""
    left, top, right, bottom = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((left, top - 14), title, fill=(0, 0, 0))
    points = [(float(x), float(y)) for x, y in zip(xs, ys) if np.isfinite(y)]
    if not points:
        draw.text((left + 8, top + 8), "no data yet", fill=(120, 120, 120))
        return
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = y_range or (min(p[1] for p in points), max(p[1] for p in points))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top))

    xy = [at(x, y) for x, y in points]
    if len(xy) == 1:
        draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=colour)
    else:
        draw.line(xy, fill=colour, width=2)
    draw.text((left - 4, bottom + 3), f"{x0:g}", fill=(0, 0, 0))
    draw.text((right - 40, bottom + 3), f"{x1:g}", fill=(0, 0, 0))
    draw.text((left + 4, top + 2), f"{y1:.3g}", fill=(80, 80, 80))
    draw.text((left + 4, bottom - 13), f"{y0:.3g}", fill=(80, 80, 80))


def curves(
    iterations: Sequence[float], losses: Sequence[float], eval_iterations: Sequence[float], mean_ius: Sequence[float]
) -> Image.Image:
    """Two panels side by side: training loss and validation mean IU against iteration."""
    image = Image.new("RGB", (820, 320), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    _panel(draw, (50, 30, 390, 290), iterations, losses, "training loss", (200, 40, 40))
    _panel(draw, (460, 30, 800, 290), eval_iterations, mean_ius, "val mean IU", (40, 80, 200), (0.0, 1.0))
    draw.text((380, 305), "iteration", fill=(0, 0, 0))
    return image


def sample_strip(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, palette: str = "voc") -> Image.Image:
    """image | truth | prediction, side by side (labels in the dataset's colours; an RGB-D image shows its colour)."""
    labels = (truth, prediction)
    panels = [np.asarray(image, np.uint8)[:, :, :3]] + [np.asarray(colorize(m, palette).convert("RGB")) for m in labels]
    H, W = truth.shape
    strip = np.full((H, 3 * W + 8, 3), 255, np.uint8)
    for k, panel in enumerate(panels):
        strip[:, k * (W + 4) : k * (W + 4) + W] = panel
    return Image.fromarray(strip)


def sample_saver(
    folder: str, prefix: str, count: int, palette: str = "voc"
) -> Callable[[int, np.ndarray, np.ndarray, np.ndarray], None]:
    """An ``on_prediction(i, image, label, prediction)`` hook (``inference.evaluate``) that saves the strips of
    the first ``count`` items as ``<folder>/<prefix>_<i>.png``."""
    os.makedirs(folder, exist_ok=True)

    def save(i: int, image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> None:
        if i < count:
            sample_strip(image, label, prediction, palette).save(os.path.join(folder, f"{prefix}_{i}.png"))

    return save
