"""Shapes: the built-in synthetic segmentation set, so that an FCN can learn without a download.

Each image holds one to four shapes of five classes over a textured, noisy
background:

    1 disc, 2 square, 3 triangle (filled)     4 ring, 5 bar (thin)

Every shape gets a random colour, independent of its class, so a network
must learn the shape, not the colour. Shapes do not overlap (an occluded
disc is no longer round, and its class would be a guess) and their radius
is 15-20% of the image; rings and bars are about S/16 thick (8 pixels at S = 128, one cell
of FCN-8s's finest, stride-8 scores, a quarter of FCN-32s's): they are where
the finer skips should beat FCN-32s (Sec. 4.2). Thinner lines than a
stride-8 cell could not be drawn by any FCN's bilinear upsampling.

Item i of a split is drawn from its own generator, seeded by (seed, split,
i): the dataset is the same on every machine and in every run, needs no
storage, and its train and val splits never share an image.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.ndimage import binary_dilation

CLASSES = ("background", "disc", "square", "triangle", "ring", "bar")
_SPLITS = {"train": 0, "val": 1, "test": 2}


class Shapes:
    """Synthetic shapes: item i is (uint8 RGB image (S, S, 3), int64 label (S, S)) with labels in 0..5."""

    classes = CLASSES
    n_class = len(CLASSES)
    MIN_SIZE = 16  # the smallest image the shapes fit in

    def __init__(self, split: str = "train", size: int = 64, length: int | None = None, seed: int = 0):
        what = type(self).__name__
        if split not in _SPLITS:
            raise ValueError(f"{what}: split must be one of {', '.join(_SPLITS)}, got {split!r}")
        if size < self.MIN_SIZE:
            raise ValueError(f"{what}: size must be at least {self.MIN_SIZE} pixels, got {size}")
        self.split, self.size, self.seed = split, size, seed
        self.length = length if length is not None else (2000 if split == "train" else 100)

    #: Extra entropy for the item generators of a variant (RGBDShapes, TwoLabelShapes): its own images.
    _STREAM: tuple[int, ...] = ()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.length:
            raise IndexError(f"{type(self).__name__} {self.split}: index {i} out of range [0, {self.length})")
        return self._render(np.random.default_rng([self.seed, _SPLITS[self.split], i, *self._STREAM]))

    def _render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return render(rng, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, size={self.size}, length={self.length}, seed={self.seed})"


def _background(rng: np.random.Generator, S: int) -> np.ndarray:
    """A smooth random colour field (a 4x4 grid of colours, interpolated) with fine noise: (S, S, 3) float."""
    grid = rng.uniform(0, 255, size=(4, 4, 3))
    across = _bilinear_weights(S)  # (S, 4)
    smooth = np.einsum("ia,jb,abc->ijc", across, across, grid, optimize=True)
    stripes = 20 * np.sin(np.arange(S) * rng.uniform(0.2, 1.2) + rng.uniform(0, 6.3))
    return smooth + (stripes[:, None, None] if rng.random() < 0.5 else stripes[None, :, None])


@functools.cache
def _bilinear_weights(S: int) -> np.ndarray:
    """(S, 4): linear interpolation from 4 grid points to S, the end points on the end pixels.

    Pixel i sits at 3i / (S - 1) on the grid, between points a and a + 1 with
    weights 1 - f and f: the same field as ``scipy.ndimage.zoom(grid, S / 4,
    order=1)`` (to 1e-13), as two small matrix products.
    """
    at = np.arange(S) * (3 / (S - 1))
    a = np.minimum(np.floor(at).astype(np.int64), 2)
    f = at - a
    weights = np.zeros((S, 4))
    weights[np.arange(S), a] = 1 - f
    weights[np.arange(S), a + 1] += f
    weights.flags.writeable = False
    return weights


@functools.cache
def _pixel_centres(S: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x), each (S, S) float64: the centre of every pixel, shared by all shapes of size S."""
    y, x = np.mgrid[0:S, 0:S].astype(np.float64) + 0.5
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _shape_mask(cls: int, rng: np.random.Generator, S: int) -> np.ndarray:
    """A boolean (S, S) mask of one shape of class ``cls`` at a random place, size and angle."""
    y, x = _pixel_centres(S)
    cy, cx = rng.uniform(0.15 * S, 0.85 * S, size=2)
    r = rng.uniform(0.15, 0.20) * S
    theta = rng.uniform(0, np.pi)
    thickness = max(S / 16, 0.45 * r)  # rings and bars: about one stride-8 cell at S = 128
    if cls in (1, 4):  # disc, ring: distance from the centre
        d = np.hypot(x - cx, y - cy)
        return d <= r if cls == 1 else np.abs(d - r) <= thickness / 2
    if cls == 3:  # triangle: inside three half-planes at 120 degrees
        inside = np.ones((S, S), bool)
        for k in range(3):
            a = theta + 2 * np.pi * k / 3
            inside &= (x - cx) * np.cos(a) + (y - cy) * np.sin(a) <= 0.5 * r
        return inside
    u = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)  # coordinates along and across the shape
    v = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
    if cls == 2:  # square
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    return (np.abs(u) <= 1.2 * r) & (np.abs(v) <= thickness / 2)  # bar


def paint_contrasting(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Fill ``mask`` with a random colour that stands out from the background under it (class-independent)."""
    under = image[mask].mean(axis=0)
    colour = rng.uniform(0, 255, size=3)
    for _ in range(10):
        if np.abs(colour - under).sum() >= 150:
            break
        colour = rng.uniform(0, 255, size=3)
    image[mask] = colour + rng.normal(0, 8, size=(int(mask.sum()), 3))


def render(rng: np.random.Generator, S: int, paint=paint_contrasting) -> tuple[np.ndarray, np.ndarray]:
    """One image and its label map, drawn from ``rng``.

    A shape that would overlap or touch one already drawn is moved (up to 20
    tries at new places, sizes and angles) or else left out. ``paint(rng,
    image, mask)`` colours each shape (the RGB-D variant hides some).
    """
    image = _background(rng, S)
    label = np.zeros((S, S), np.int64)
    for _ in range(rng.integers(1, 5)):
        cls = int(rng.integers(1, len(CLASSES)))
        taken = binary_dilation(label > 0)  # the shapes so far and a one-pixel margin
        for _ in range(20):
            mask = _shape_mask(cls, rng, S)
            if not (mask & taken).any():
                break
        else:
            continue
        if not mask.any():
            continue
        paint(rng, image, mask)
        label[mask] = cls
    image += rng.normal(0, 10, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label
