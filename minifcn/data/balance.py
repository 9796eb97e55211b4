"""Class weights for imbalanced data: median frequency balancing (Eigen and Fergus, 2015), and ENet's.

On CamVid, road, building and sky cover 72% of the pixels and pole, sign,
pedestrian and bicyclist about 1% each; a plain per-pixel loss learns the
large classes and little else. Median frequency balancing weighs class c by

    freq(c)   = pixels of class c / pixels of the images in which c appears
    weight(c) = median over classes of freq / freq(c)

so a class at the median frequency weighs 1, rarer ones more. This is the
recipe of the published CamVid results (SegNet and others). ENet (Paszke
et al., 2016) weighs by the share of all labelled pixels instead:

    p(c)      = pixels of class c / all labelled pixels
    weight(c) = 1 / ln(1.02 + p(c))

which lies between 1.4 (a class with every pixel) and 50.5 (a vanishing
one): gentler on the rarest classes than median frequency, whose weights on
CamVid span 0.2 to 10 times the median. Void (255) pixels count for nothing;
a class that never appears gets weight 0 under both, since no weight can
teach it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .files import IGNORE, DataError


def class_pixel_counts(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """(pixels of each class, pixels of the images holding each class), both (n_class,) int64.

    Reads only the labels when the dataset is a list of files (``pairs`` and
    ``read_label``), so the images are never decoded.
    """
    n_class = dataset.n_class
    pixels, image_pixels = np.zeros(n_class, np.int64), np.zeros(n_class, np.int64)
    for i in range(len(dataset)):
        if hasattr(dataset, "pairs") and hasattr(dataset, "read_label"):
            label = dataset.read_label(dataset.pairs[i][1])
        else:
            label = np.asarray(dataset[i][1])
        counts = np.bincount(label[label != IGNORE].ravel(), minlength=n_class)[:n_class]
        pixels += counts
        image_pixels += np.where(counts > 0, int((label != IGNORE).sum()), 0)
    return pixels, image_pixels


def median_frequency_weights(dataset: Any) -> np.ndarray:
    """The median-frequency weight of each class (float64, (n_class,)), from ``dataset``'s labels."""
    pixels, image_pixels = class_pixel_counts(dataset)
    present = pixels > 0
    if not present.any():
        raise DataError(f"{dataset!r}: no labelled pixels, so no class frequencies")
    freq = np.where(present, pixels / np.maximum(image_pixels, 1), 0.0)
    weights = np.zeros(len(pixels))
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


def enet_weights(dataset: Any, c: float = 1.02) -> np.ndarray:
    """ENet's weight of each class (float64, (n_class,)): 1 / ln(c + p), p its share of all labelled pixels."""
    pixels, _ = class_pixel_counts(dataset)
    if pixels.sum() == 0:
        raise DataError(f"{dataset!r}: no labelled pixels, so no class frequencies")
    share = pixels / pixels.sum()
    return np.where(pixels > 0, 1.0 / np.log(c + share), 0.0)


#: --class-weights by name: each computes one weight per class from the training labels.
BALANCING = {"median-freq": median_frequency_weights, "enet": enet_weights}


def read_class_weights(path: str, n_class: int) -> np.ndarray:
    """Class weights from a file: ``.npy``, or text with one number per class (spaces, commas or lines)."""
    try:
        if path.endswith(".npy"):
            weights = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as f:
                weights = np.array([float(v) for v in f.read().replace(",", " ").split()])
    except FileNotFoundError:
        raise DataError(f"class weights {path!r} do not exist") from None
    except (ValueError, OSError) as e:
        raise DataError(f"class weights {path!r} cannot be read: {e}") from None
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if weights.shape != (n_class,):
        raise DataError(f"class weights {path!r} hold {weights.size} values; the dataset has {n_class} classes")
    if not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise DataError(f"class weights {path!r} must be finite and >= 0, got {weights.tolist()}")
    return weights
