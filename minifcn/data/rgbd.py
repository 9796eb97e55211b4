"""RGB-D data (Sec. 5, NYUDv2): an image with a depth channel. Item i is (uint8 (H, W, 4), int64 label (H, W)).

The fourth channel is depth, quantised to 8 bits over 0-10 m (0 = at the
camera, 255 = 10 m or farther; about 4 cm a step), NYUDv2's range. Keeping
it in the image array lets every transform move it with the colour
(flip, scale, pad, crop) and every batch carry it as a fourth input channel.

    RGBDShapes     Shapes with depth: half of the shapes are painted in the
                   background's own colours, so only depth reveals them
    RGBDFolder     images/<stem>.jpg, depth/<stem>.png (16-bit, millimetres, 0 = unknown),
                   labels/<stem>.png, matched by stem
"""

from __future__ import annotations

import os

import numpy as np

from .files import DataError, SegmentationFiles, check_pair, read_image, read_single_channel, require_dir
from .folder import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, _by_stem
from .shapes import Shapes, paint_contrasting, render

DEPTH_RANGE_MM = 10000  # the depth channel's 255


def depth_to_channel(depth_mm: np.ndarray) -> np.ndarray:
    """Millimetres (any integer or float array) -> the uint8 depth channel (0..255 over 0..10 m, clipped)."""
    return np.clip(np.rint(np.asarray(depth_mm, np.float64) * 255.0 / DEPTH_RANGE_MM), 0, 255).astype(np.uint8)


class RGBDShapes(Shapes):
    """Shapes with a depth channel: (uint8 RGB-D image (S, S, 4), int64 label (S, S)), labels in 0..5.

    The background recedes as a random slanted plane 5-9.5 m away; each shape
    is a flat object 1-4 m away. Each shape is, with probability 1/2,
    painted in a contrasting colour as in Shapes, or camouflaged: left in the
    background's texture, visible in the depth channel alone. An RGB net can
    find at most the painted half; depth finds them all, but depth alone
    cannot see the texture (the classes are shapes, so it need not).
    """

    _STREAM = (4,)

    def _render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return render_rgbd(rng, self.size)


def render_rgbd(rng: np.random.Generator, S: int) -> tuple[np.ndarray, np.ndarray]:
    """One RGB-D image and its label, drawn from ``rng``."""
    objects = []

    def paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
        if rng.random() < 0.5:
            paint_contrasting(rng, image, mask)
        # else camouflaged: the background's texture (and noise) stays
        objects.append(mask)

    image, label = render(rng, S, paint)
    y, x = np.mgrid[0:S, 0:S] / S
    depth = rng.uniform(6500, 8000) + rng.uniform(-1000, 1000) * y + rng.uniform(-500, 500) * x  # mm, 5-9.5 m
    for mask in objects:
        depth[mask] = rng.uniform(1000, 4000)
    depth += rng.normal(0, 50, size=depth.shape)  # a sensor's noise, about 5 cm
    return np.concatenate([image, depth_to_channel(depth)[:, :, None]], axis=2), label


class RGBDFolder(SegmentationFiles):
    """RGB-D triples from three folders, matched by stem: image, 16-bit depth PNG (mm), label PNG."""

    def __init__(
        self, images_dir: str, depth_dir: str, labels_dir: str, n_class: int, classes: list[str] | None = None
    ):
        layout = (
            "  images_dir/<stem>.jpg (or .png ...)\n  depth_dir/<stem>.png (16-bit, millimetres)\n"
            "  labels_dir/<stem>.png (class indices, 255 = ignore)"
        )
        for folder, what in ((images_dir, "images"), (depth_dir, "depth"), (labels_dir, "labels")):
            require_dir(folder, f"RGBDFolder {what}", layout)
        if not isinstance(n_class, int) or not 1 <= n_class <= 255:
            raise DataError(f"RGBDFolder: n_class must be an integer in [1, 255], got {n_class!r}")
        images = _by_stem(images_dir, IMAGE_EXTENSIONS, "image")
        if not images:
            raise DataError(f"RGBDFolder: no images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir!r}")
        depths, labels = _by_stem(depth_dir, (".png",), "depth"), _by_stem(labels_dir, LABEL_EXTENSIONS, "label")
        pairs, self.depth_paths = [], []
        for stem, image_path in images.items():
            if stem not in depths:
                raise DataError(
                    f"RGBDFolder: image {image_path!r} has no depth {os.path.join(depth_dir, stem + '.png')!r}"
                )
            if stem not in labels:
                raise DataError(
                    f"RGBDFolder: image {image_path!r} has no label {os.path.join(labels_dir, stem + '.png')!r}"
                )
            pairs.append((image_path, labels[stem]))
            self.depth_paths.append(depths[stem])
        super().__init__(pairs, classes if classes is not None else [str(c) for c in range(n_class)], "RGBDFolder")

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"RGBDFolder: index {i} out of range [0, {len(self)})")
        image_path, label_path = self.pairs[i]
        image, label = read_image(image_path), self.read_label(label_path)
        check_pair(image, label, self.n_class, image_path, label_path)
        depth = read_depth(self.depth_paths[i])
        if depth.shape != label.shape:
            raise DataError(
                f"RGBDFolder: depth {self.depth_paths[i]!r} is {depth.shape[1]}x{depth.shape[0]}, "
                f"its image {image_path!r} {label.shape[1]}x{label.shape[0]}"
            )
        return np.concatenate([image, depth_to_channel(depth)[:, :, None]], axis=2), label


def read_depth(path: str) -> np.ndarray:
    """A 16-bit (or 8-bit) grey PNG of depths in millimetres, as an int64 array (H, W)."""
    return read_single_channel(
        path, "depth", ("I;16", "I;16B", "I;16L", "I", "L"), "depth must be a grey PNG of millimetres"
    )
