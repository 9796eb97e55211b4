"""Data augmentation for segmentation: flip, scale, pad and crop an image and its label together.

The image and its label must move as one, so every transform takes and
returns the pair: image uint8 (H, W, 3) (or (H, W, 4) with depth), label int64 (H, W) (or
(H, W, K) for K tasks, e.g. SIFT Flow's semantic and geometric labels). Images are
resized bilinearly; labels by nearest neighbour (a blend of two class
indices is not a class), and where a crop reaches past the image the label
is padded with 255, which the loss and the metrics ignore. The image is
padded with ``fill``, by default the ImageNet mean colour, which the
preprocessing maps to about zero.

The paper found that mirroring and jittering did not help on PASCAL VOC
(Sec. 4.3) and trains on whole images; batches of crops are for batch
sizes above 1 and for the synthetic data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .files import IGNORE

MEAN_RGB = (123, 117, 104)  # the ImageNet mean pixel, rounded, in RGB order


def hflip(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left to right (a view, no copy)."""
    return image[:, ::-1], label[:, ::-1]


def rescale(image: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize both by ``factor``: the image bilinearly, the label by nearest neighbour."""
    H, W = label.shape[:2]
    OH, OW = max(1, round(H * factor)), max(1, round(W * factor))
    if (OH, OW) == (H, W):
        return image, label
    resize = lambda a: np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((OW, OH), Image.BILINEAR))  # noqa: E731
    if image.shape[2] == 3:
        image = resize(image)
    else:  # RGB-D: colour and depth resized alike, but apart (PIL would read a 4th channel as alpha)
        image = np.concatenate(
            [resize(image[:, :, :3])] + [resize(image[:, :, c])[:, :, None] for c in range(3, image.shape[2])], axis=2
        )
    # Nearest neighbour by index arithmetic: output pixel centre (i + 0.5) / factor in the input.
    rows = np.minimum(((np.arange(OH) + 0.5) * H / OH).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(OW) + 0.5) * W / OW).astype(np.int64), W - 1)
    return image, label[rows[:, None], cols[None, :]]


def pad_to(
    image: np.ndarray, label: np.ndarray, size: tuple[int, int], fill: tuple[int, int, int] = MEAN_RGB
) -> tuple[np.ndarray, np.ndarray]:
    """Pad at the bottom and right up to at least ``size`` (H, W): the image with ``fill``, the label with 255.

    A depth channel beyond ``fill``'s colours is padded with 0.
    """
    H, W = label.shape[:2]
    PH, PW = max(size[0], H), max(size[1], W)
    if (PH, PW) == (H, W):
        return image, label
    C = image.shape[2]
    out_image = np.zeros((PH, PW, C), np.uint8)
    out_image[...] = np.asarray((tuple(fill) + (0,) * C)[:C], np.uint8)
    out_image[:H, :W] = image
    out_label = np.full((PH, PW) + label.shape[2:], IGNORE, label.dtype)  # (H, W) or (H, W, tasks)
    out_label[:H, :W] = label
    return out_image, out_label


def jitter_colour(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Scale the brightness, contrast and saturation of the colour channels by factors drawn from [1 - s, 1 + s].

    Brightness multiplies every channel; contrast moves each pixel towards or away from the image's mean grey;
    saturation moves each pixel towards or away from its own grey (0.299 R + 0.587 G + 0.114 B). Another drive
    is another day's light: the net should not learn a street's colour cast. The result is rounded and clipped
    to 0..255 once, at the end. A depth channel is left alone.
    """
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, 3)
    rgb = image[:, :, :3].astype(np.float32) * np.float32(brightness)
    luma = np.asarray([0.299, 0.587, 0.114], np.float32)
    mean_grey = np.float32((rgb @ luma).mean(dtype=np.float64))  # a float64 sum over the pixels
    rgb = mean_grey + np.float32(contrast) * (rgb - mean_grey)
    grey = rgb @ luma  # (H, W)
    rgb = grey[:, :, None] + np.float32(saturation) * (rgb - grey[:, :, None])
    out = image.copy()
    out[:, :, :3] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out


def crop(image: np.ndarray, label: np.ndarray, top: int, left: int, size: tuple[int, int]):
    """The window of ``size`` (H, W) at (top, left) of both (views)."""
    return image[top : top + size[0], left : left + size[1]], label[top : top + size[0], left : left + size[1]]


@dataclass(frozen=True)
class Augment:
    """Random flip, scale, then a crop of ``crop_size`` (padded where the image is smaller).

    ``crop_size`` None keeps the (rescaled) image whole. ``scale`` is the
    (min, max) range of a uniform random factor; (1, 1) leaves sizes alone.
    ``colour`` > 0 jitters brightness, contrast and saturation by up to that
    fraction (:func:`jitter_colour`), first, before any flip or scale.
    Randomness comes from the generator passed in, so a batch is the same
    whenever it is drawn with the same seed (resumed runs see the same data).
    """

    flip: bool = True
    scale: tuple[float, float] = (1.0, 1.0)
    crop_size: tuple[int, int] | None = None
    fill: tuple[int, int, int] = MEAN_RGB
    colour: float = 0.0

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        if self.colour:
            image = jitter_colour(image, self.colour, rng)
        if self.flip and rng.random() < 0.5:
            image, label = hflip(image, label)
        low, high = self.scale
        if (low, high) != (1.0, 1.0):
            image, label = rescale(image, label, float(rng.uniform(low, high)))
        if self.crop_size is not None:
            image, label = pad_to(image, label, self.crop_size, self.fill)
            H, W = label.shape[:2]
            top = int(rng.integers(0, H - self.crop_size[0] + 1))
            left = int(rng.integers(0, W - self.crop_size[1] + 1))
            image, label = crop(image, label, top, left, self.crop_size)
        return image, label
