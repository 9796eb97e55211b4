"""Custom datasets: a folder of images and a folder of label images, matched by file stem.

    images_dir/cat_01.jpg   <->   labels_dir/cat_01.png

Labels are palette or grey PNGs whose pixel values are class indices in
[0, n_class), with 255 for pixels to ignore. Every image needs its label;
label files without an image are left alone (like extra files in a folder).
"""

from __future__ import annotations

import os

from .files import DataError, SegmentationFiles, require_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".pgm")


def _by_stem(folder: str, extensions: tuple[str, ...], what: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in extensions and os.path.isfile(os.path.join(folder, name)):
            if stem in files:
                raise DataError(
                    f"FolderSegmentation: two {what} files share the stem {stem!r}: "
                    f"{files[stem]!r} and {os.path.join(folder, name)!r}"
                )
            files[stem] = os.path.join(folder, name)
    return files


class FolderSegmentation(SegmentationFiles):
    """Image/label pairs from two folders, matched by stem; item i is (uint8 RGB (H, W, 3), int64 (H, W)).

    ``classes`` (optional) names the classes; by default they are '0', '1', ...
    Pairs are in sorted order of their stems.
    """

    def __init__(self, images_dir: str, labels_dir: str, n_class: int, classes: list[str] | None = None):
        layout = "  images_dir/<stem>.jpg (or .png ...)\n  labels_dir/<stem>.png (class indices, 255 = ignore)"
        require_dir(images_dir, "FolderSegmentation images", layout)
        require_dir(labels_dir, "FolderSegmentation labels", layout)
        if not isinstance(n_class, int) or not 1 <= n_class <= 255:
            raise DataError(f"FolderSegmentation: n_class must be an integer in [1, 255], got {n_class!r}")
        if classes is not None and len(classes) != n_class:
            raise DataError(f"FolderSegmentation: {len(classes)} class names for n_class={n_class}")
        self.images_dir, self.labels_dir = images_dir, labels_dir
        images = _by_stem(images_dir, IMAGE_EXTENSIONS, "image")
        if not images:
            raise DataError(f"FolderSegmentation: no images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir!r}")
        labels = _by_stem(labels_dir, LABEL_EXTENSIONS, "label")
        pairs = []
        for stem, image_path in images.items():
            if stem not in labels:
                raise DataError(
                    f"FolderSegmentation: image {image_path!r} has no label {os.path.join(labels_dir, stem + '.png')!r}"
                )
            pairs.append((image_path, labels[stem]))
        names = classes if classes is not None else [str(c) for c in range(n_class)]
        super().__init__(pairs, names, "FolderSegmentation")

    def __repr__(self) -> str:
        return (
            f"FolderSegmentation({self.images_dir!r}, {self.labels_dir!r}, {len(self)} images, n_class={self.n_class})"
        )
