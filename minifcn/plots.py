"""Training pictures drawn with Pillow alone: the curves of a run, and sample strips with their legend.

matplotlib is an extra (for the lessons); the training command needs
neither it nor a display, so its two pictures are drawn here directly.

``curves(rows)`` takes log.csv's rows as they are and draws three panels:
the training loss (each iteration's value faint, a moving average over it),
the evaluations (mean IU and pixel accuracy, each one a marked point with
its value), and the learning rate with its peak marked. Axes carry round
tick values, grid lines and the iteration. ``sample_strip`` shows image |
truth | prediction under their names and, under the prediction, a swatch and
the name of every class either map holds.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .viz import colorize, palette_colours

#: Sample strips show pictures at least this tall (smaller ones are enlarged by a whole factor, at most 4).
STRIP_HEIGHT = 192

INK, GRID, FAINT = (0, 0, 0), (225, 225, 225), (120, 120, 120)
LOSS, LOSS_RAW, MEAN_IU, PIXEL_ACC, RATE = (200, 40, 40), (240, 190, 190), (40, 80, 200), (40, 150, 80), (120, 60, 160)


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) covering [low, high], about ``count`` of them."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.0e}"


class _Panel:
    """A chart in ``box`` (left, top, right, bottom) with data ranges ``xs`` and ``ys``, gridded.

    The data fill the box less ``INSET`` pixels on each side, so that a point
    on the edge of the range is drawn whole.
    """

    INSET = 8

    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple, title: str, xs: tuple, ys: tuple, y_ticks: int = 5):
        self.draw, self.box = draw, box
        left, top, right, bottom = box
        (self.x0, self.x1), (self.y0, self.y1) = xs, ys
        for y in ticks(self.y0, self.y1, y_ticks):
            draw.line([self.at(self.x0, y)[0], self.at(self.x0, y)[1], right, self.at(self.x0, y)[1]], fill=GRID)
            draw.text((left - 6 - 6 * len(_label(y)), self.at(self.x0, y)[1] - 6), _label(y), fill=INK)
        for x in ticks(self.x0, self.x1, 6):
            px = self.at(x, self.y0)[0]
            draw.line([px, top, px, bottom], fill=GRID)
            draw.text((px - 3 * len(_label(x)), bottom + 4), _label(x), fill=INK)
        draw.rectangle(box, outline=INK)
        draw.text((left, top - 15), title, fill=INK)
        name_width = draw.textbbox((0, 0), "iteration")[2]
        draw.text(((left + right - name_width) / 2, bottom + 17), "iteration", fill=INK)  # the x axis, every panel

    def at(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = (edge + sign * self.INSET for edge, sign in zip(self.box, (1, 1, -1, -1)))
        return (
            left + (x - self.x0) / (self.x1 - self.x0) * (right - left),
            bottom - (y - self.y0) / (self.y1 - self.y0) * (bottom - top),
        )

    def line(self, xs: Sequence[float], ys: Sequence[float], colour: tuple, width: int = 2) -> None:
        points = [self.at(x, y) for x, y in zip(xs, ys) if np.isfinite(y)]
        if len(points) > 1:
            self.draw.line(points, fill=colour, width=width)

    def points(self, xs: Sequence[float], ys: Sequence[float], colour: tuple, values: bool) -> None:
        """A dot at each (x, y), and with ``values`` its value beside it, on the side the line leaves free."""
        for x, y in zip(xs, ys):
            px, py = self.at(x, y)
            self.draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour, outline=(255, 255, 255))
        if not values:
            return
        left, top, right, bottom = self.box
        for i, (x, y) in enumerate(zip(xs, ys)):
            px, py = self.at(x, y)
            before = ys[i - 1] if i > 0 else None
            after = ys[i + 1] if i + 1 < len(ys) else None
            text = f"{y:.3f}"
            w, h = self.draw.textbbox((0, 0), text)[2:]
            if before is not None and after is not None and before < y > after:  # a peak: above
                tx, ty = px - w / 2, py - h - 8
            elif before is not None and after is not None and before > y < after:  # a valley: below
                tx, ty = px - w / 2, py + 7
            else:  # rising: the line leaves the upper left free; falling: the lower left
                rising = (y if after is None else after) >= (y if before is None else before)
                tx, ty = px - w - 7, (py - h - 6 if rising else py + 5)
            tx, ty = min(max(tx, left + 2), right - w - 2), min(max(ty, top + 2), bottom - h - 2)
            self.draw.rectangle([tx - 1, ty - 1, tx + w + 1, ty + h + 1], fill=(255, 255, 255))
            self.draw.text((tx, ty), text, fill=colour)

    def legend(self, entries: Sequence[tuple[str, tuple]]) -> None:
        """Swatches and names on the title's line, right-aligned, outside the data."""
        left, top, right, bottom = self.box
        x = right
        for name, colour in reversed(entries):
            x -= self.draw.textbbox((0, 0), name)[2] + 22
            self.draw.rectangle([x, top - 13, x + 10, top - 4], fill=colour)
            self.draw.text((x + 14, top - 15), name, fill=INK)


def _range(values: Sequence[float], floor: float | None = None) -> tuple[float, float]:
    finite = [v for v in values if np.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    low = low if floor is None else min(low, floor)
    return (low, high) if high > low else (low, low + 1.0)


def smoothed(values: Sequence[float], window: int) -> list[float]:
    """The mean of the last ``window`` values at each point (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curves(rows: Sequence[Mapping[str, str]]) -> Image.Image:
    """The curves of a run from log.csv's rows (iteration, loss, lr, and the scores where evaluated)."""

    def column(name: str) -> tuple[list[float], list[float]]:
        kept = [r for r in rows if r.get(name) not in (None, "")]
        return [float(r["iteration"]) for r in kept], [float(r[name]) for r in kept]

    image = Image.new("RGB", (980, 600), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    (it, loss), (ev, mean_iu), (_, pixel_acc), (lr_it, lr) = (column(n) for n in ("loss", "mean_iu", "pixel_acc", "lr"))
    if not it:
        draw.text((40, 40), "no iterations logged yet", fill=FAINT)
        return image
    span = (min(it + ev), max(it + ev) if max(it + ev) > min(it + ev) else min(it) + 1)

    panel = _Panel(draw, (70, 35, 470, 400), "training loss (faint: each iteration; line: moving average)", span,
                   _range(loss, 0.0))  # fmt: skip
    panel.line(it, loss, LOSS_RAW, 1)
    panel.line(it, smoothed(loss, max(1, len(loss) // 20)), LOSS)

    panel = _Panel(draw, (560, 35, 960, 400), "validation", span, (0.0, 1.0))
    panel.line(ev, pixel_acc, PIXEL_ACC)
    panel.line(ev, mean_iu, MEAN_IU)
    panel.points(ev, pixel_acc, PIXEL_ACC, values=len(ev) <= 12)
    panel.points(ev, mean_iu, MEAN_IU, values=len(ev) <= 12)
    if ev:
        panel.legend([("mean IU", MEAN_IU), ("pixel accuracy", PIXEL_ACC)])
    else:
        draw.text((580, 200), "no evaluation yet", fill=FAINT)

    if lr:
        panel = _Panel(draw, (70, 470, 960, 560), "learning rate", span, _range(lr, 0.0), y_ticks=2)
        panel.line(lr_it, lr, RATE)
        peak = int(np.argmax(lr))  # the schedule's peak (after warm-up), marked with its value
        panel.points([lr_it[peak]], [lr[peak]], RATE, values=False)
        px, py = panel.at(lr_it[peak], lr[peak])
        draw.text((px + 10, py + 9), f"peak {lr[peak]:.3g}", fill=RATE)  # under the falling line
    return image


def sample_strip(
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    palette: str = "voc",
    class_names: Sequence[str] | None = None,
) -> Image.Image:
    """image | truth | prediction side by side under their names (labels in the dataset's colours; an RGB-D image
    shows its colour), and under the prediction a legend: the swatch and name of each class present in either map.

    Pictures smaller than ``STRIP_HEIGHT`` rows are enlarged by a whole factor (at most 4), each pixel a block,
    so that a 128x128 Shapes image reads as well as a CamVid photograph.
    """
    labels = (truth, prediction)
    panels = [np.asarray(image, np.uint8)[:, :, :3]] + [np.asarray(colorize(m, palette).convert("RGB")) for m in labels]
    scale = min(4, -(-STRIP_HEIGHT // truth.shape[0]))
    panels = [p.repeat(scale, axis=0).repeat(scale, axis=1) for p in panels]
    H, W = panels[0].shape[:2]
    present = sorted(int(c) for c in np.union1d(np.unique(truth), np.unique(prediction)))

    def name(c: int) -> str:
        return "void" if c == 255 else (class_names[c] if class_names and c < len(class_names) else str(c))

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    column = 17 + max(measure.textbbox((0, 0), name(c))[2] for c in present) + 12  # swatch, name, space
    per_row = max(1, W // column)
    legend_rows = -(-len(present) // per_row)
    top, legend_left = 18, 2 * (W + 4)  # the panels' names above; the legend under the prediction alone
    strip = np.full((top + H + 18 + 18 * legend_rows, max(3 * W + 8, legend_left + column), 3), 255, np.uint8)
    for k, panel in enumerate(panels):
        strip[top : top + H, k * (W + 4) : k * (W + 4) + W] = panel
    picture = Image.fromarray(strip)
    draw = ImageDraw.Draw(picture)
    for k, title in enumerate(("image", "truth", "prediction")):
        draw.text((k * (W + 4) + 2, 3), title, fill=INK)
    colours = palette_colours(palette)
    for k, c in enumerate(present):
        x, y = legend_left + 4 + (k % per_row) * column, top + H + 6 + (k // per_row) * 18
        draw.rectangle([x, y, x + 12, y + 12], fill=tuple(int(v) for v in colours[c]), outline=INK)
        draw.text((x + 17, y), name(c), fill=INK)
    return picture


def sample_saver(
    folder: str, prefix: str, count: int, palette: str = "voc", class_names: Sequence[str] | None = None
) -> Callable[[int, np.ndarray, np.ndarray, np.ndarray], None]:
    """An ``on_prediction(i, image, label, prediction)`` hook (``inference.evaluate``) that saves the strips of
    the first ``count`` items as ``<folder>/<prefix>_<i>.png``."""
    os.makedirs(folder, exist_ok=True)

    def save(i: int, image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> None:
        if i < count:
            strip = sample_strip(image, label, prediction, palette, class_names)
            strip.save(os.path.join(folder, f"{prefix}_{i}.png"))

    return save
