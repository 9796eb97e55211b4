"""Reading segmentation data from disk, with errors that name the file.

Every dataset on disk is a list of (image file, label file) pairs. This
module reads one pair and checks it:

- the image becomes a uint8 RGB array (H, W, 3), whatever its mode
  (grey, palette, RGBA: converted with Pillow);
- the label becomes an int64 array (H, W) of class indices. A palette PNG
  (VOC's) gives its indices as they are, not its colours; a grey PNG its
  values; a MATLAB file (SBD's) the field named by the dataset;
- the label's values must lie in [0, n_class) or be 255 (ignore), and the
  image and the label must have the same size.

Each failure raises :class:`DataError` naming the file and what was
expected, so that a dataset with one bad file among thousands says which.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError
from scipy.io.matlab import MatReadError

IGNORE = 255  # the label value that the loss, the metrics and the transforms leave out


class DataError(ValueError):
    """A dataset on disk is missing, incomplete or malformed; the message names the file."""


def require_dir(path: str, what: str, layout: str) -> None:
    """Raise DataError unless ``path`` is a folder; ``layout`` describes what should be there."""
    if not os.path.isdir(path):
        raise DataError(f"{what}: folder {path!r} does not exist; expected the layout\n{layout}")


def read_list(path: str, what: str) -> list[str]:
    """The non-empty lines of a split file (one image id per line); an empty or missing list is an error."""
    if not os.path.isfile(path):
        raise DataError(f"{what}: split list {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise DataError(f"{what}: split list {path!r} is empty")
    return ids


def read_image(path: str) -> np.ndarray:
    """An image file as a uint8 RGB array (H, W, 3)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {path!r} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"image {path!r} cannot be read ({e})") from None


def read_label_image(path: str) -> np.ndarray:
    """A label image (palette or grey PNG) as an int64 array (H, W) of its pixel values.

    A palette image gives its palette indices (VOC's class indices), not its
    colours. An RGB label would be ambiguous (which colour is which class?)
    and is an error: convert it to a palette or grey image first.
    """
    return read_single_channel(
        path,
        "label",
        ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"),
        "labels must be palette (P) or grey (L) images whose pixel values are class indices",
    )


def read_single_channel(path: str, what: str, modes: tuple[str, ...], rule: str) -> np.ndarray:
    """A one-channel image file (a label, a depth map) as int64 (H, W); ``what`` and ``rule`` word its errors."""
    try:
        with Image.open(path) as im:
            if im.mode not in modes:
                raise DataError(f"{what} {path!r} is a {im.mode} image; {rule}")
            return np.asarray(im, dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"{what} {path!r} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{what} {path!r} cannot be read ({e})") from None


def read_label_mat(path: str, struct: str, field: str) -> np.ndarray:
    """The label map ``struct.field`` of a MATLAB file (SBD's ``GTcls.Segmentation``) as int64 (H, W)."""
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise DataError(f"label {path!r} does not exist") from None
    except (MatReadError, ValueError, OSError, TypeError, NotImplementedError) as e:
        raise DataError(f"label {path!r} cannot be read as a MATLAB file ({e})") from None
    try:
        label = getattr(mat[struct], field)
    except (KeyError, AttributeError):
        raise DataError(f"label {path!r} has no {struct}.{field}") from None
    label = np.asarray(label)
    if label.ndim != 2 or label.dtype.kind not in "iuf":
        raise DataError(f"label {path!r}: {struct}.{field} is not a 2-D numeric map (shape {label.shape})")
    return label.astype(np.int64)


def check_pair(image: np.ndarray, label: np.ndarray, n_class: int, image_path: str, label_path: str) -> None:
    """Raise DataError if the sizes differ or a label value is neither a class index nor 255."""
    if image.shape[:2] != label.shape:
        raise DataError(
            f"image {image_path!r} is {image.shape[1]}x{image.shape[0]} but its label "
            f"{label_path!r} is {label.shape[1]}x{label.shape[0]} (width x height)"
        )
    bad = np.unique(label[((label < 0) | (label >= n_class)) & (label != IGNORE)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise DataError(
            f"label {label_path!r} holds values {shown} outside [0, {n_class}) "
            f"(255 is the only other value allowed: ignore)"
        )


class SegmentationFiles:
    """A dataset of (image file, label file) pairs; item i is (uint8 RGB (H, W, 3), int64 label (H, W)).

    Subclasses fill ``self.pairs``, ``self.classes`` and say how a label file
    is read (``read_label``). Missing files are found when the dataset is
    built, so a run does not fail hours in; the content of each file is
    checked when it is read.
    """

    classes: Sequence[str] = ()

    def __init__(self, pairs: list[tuple[str, str]], classes: Sequence[str], what: str):
        self.pairs, self.classes, self.what = pairs, tuple(classes), what
        if not pairs:
            raise DataError(f"{what}: no images found")
        for image_path, label_path in pairs:
            if not os.path.isfile(image_path):
                raise DataError(f"{what}: image {image_path!r} does not exist")
            if not os.path.isfile(label_path):
                raise DataError(f"{what}: the label of image {image_path!r} is missing: expected {label_path!r}")

    @property
    def n_class(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.pairs)

    def read_label(self, path: str) -> np.ndarray:
        return read_label_image(path)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.what}: index {i} out of range [0, {len(self)})")
        image_path, label_path = self.pairs[i]
        image, label = read_image(image_path), self.read_label(label_path)
        check_pair(image, label, self.n_class, image_path, label_path)
        return image, label

    def name(self, i: int) -> str:
        """The stem of item i's image file (e.g. '2007_000129'), for output file names."""
        return os.path.splitext(os.path.basename(self.pairs[i][0]))[0]

    def __repr__(self) -> str:
        return f"{self.what}({len(self)} images, {self.n_class} classes)"
