"""CamVid (Brostow, Fauqueur and Cipolla, 2009): real street scenes from a driving car, 11 classes.

The layout is the SegNet tutorial's, exactly as distributed (480x360 PNGs)::

    root/train.txt          one pair a line: /SegNet/CamVid/train/<name>.png /SegNet/CamVid/trainannot/<name>.png
    root/train/<name>.png   RGB images
    root/trainannot/<name>.png   'L' labels: class index 0..10, 11 = void
    (the same for val, and test where the root has test.txt)

The paths in ``<split>.txt`` are the original authors' absolute paths; each
is read as its last two components (``train/<name>.png``) below ``root``.
Void (11) becomes the ignore label 255, so that the loss, the metrics and
the transforms leave it out as they do VOC's border.
"""

from __future__ import annotations

import os

import numpy as np

from .files import IGNORE, DataError, SegmentationFiles, read_label_image, require_dir

CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
CAMVID_VOID = 11  # the label files' "unlabelled"; 255 once read

_LAYOUT = (
    "  root/<split>.txt   lines '<.../split/name.png> <.../splitannot/name.png>'\n"
    "  root/<split>/*.png (RGB images), root/<split>annot/*.png (labels 0..10, 11 = void)"
)


def _below_root(root: str, listed: str) -> str:
    """A path from a split file, as its last two components (folder/name.png) below ``root``."""
    parts = [p for p in listed.replace("\\", "/").split("/") if p]
    return os.path.join(root, *parts[-2:])


class CamVid(SegmentationFiles):
    """CamVid's ``split`` ('train', 'val', or 'test' where the root has it); item i is
    (uint8 RGB (360, 480, 3), int64 label (360, 480)) with void as 255.

    ``palette`` names the colours minifcn draws it in (``minifcn.viz``):
    CamVid's customary ones, not VOC's.
    """

    palette = "camvid"

    def __init__(self, root: str, split: str = "train"):
        require_dir(root, "CamVid", _LAYOUT)
        listing = os.path.join(root, f"{split}.txt")
        if not os.path.isfile(listing):
            present = sorted(name[:-4] for name in os.listdir(root) if name.endswith(".txt"))
            raise DataError(
                f"CamVid: no split {split!r} in {root!r}: {listing!r} does not exist "
                f"(splits there: {', '.join(present) or 'none'}); expected the layout\n{_LAYOUT}"
            )
        pairs = []
        with open(listing, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                fields = line.split()
                if len(fields) != 2:
                    raise DataError(
                        f"CamVid: {listing!r} line {number} holds {len(fields)} paths, expected two "
                        f"(an image and its label): {line.strip()!r}"
                    )
                pairs.append((_below_root(root, fields[0]), _below_root(root, fields[1])))
        if not pairs:
            raise DataError(f"CamVid: {listing!r} lists no images")
        self.root, self.split = root, split
        super().__init__(pairs, CAMVID_CLASSES, f"CamVid {split}")

    def read_label(self, path: str) -> np.ndarray:
        label = read_label_image(path)
        label[label == CAMVID_VOID] = IGNORE
        return label

    def __repr__(self) -> str:
        return f"CamVid({self.root!r}, {self.split!r}, {len(self)} images)"
