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

**Drives.** The images come from four drives, named by each file's prefix
(``0006R0_f01800.png``): train holds 0001TP (62), 0006R0 (101) and 0016E5
(204); val is 101 more images of 0016E5; test is 0001TP (62) and Seq05VD
(171). So val shares its street with most of train, and scores there reward
remembering it; test asks about a drive never seen. To choose settings on a
drive the net never saw, hold one out of train: the split ``train-without-0006R0``
(266 images) trains, and the split ``0006R0`` (a drive's name: its images in
every split listed) scores. ``HELD_OUT_DRIVE`` is the one the presets' search used.
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

HELD_OUT_DRIVE = "0006R0"  # in train only: sharing no street with val or test, it stands in for test's Seq05VD
WITHOUT = "train-without-"  # split "train-without-<drive>": train.txt less that drive's images

_LAYOUT = (
    "  root/<split>.txt   lines '<.../split/name.png> <.../splitannot/name.png>'\n"
    "  root/<split>/*.png (RGB images), root/<split>annot/*.png (labels 0..10, 11 = void)"
)


def drive_of(path: str) -> str:
    """The drive an image comes from: its file name up to the first underscore ('0006R0' for 0006R0_f01800.png)."""
    return os.path.basename(path).split("_", 1)[0]


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
        listed = sorted(name[:-4] for name in os.listdir(root) if name.endswith(".txt"))
        if split in listed:
            pairs = _read_listing(root, split)
        else:  # a drive, or train without one
            every = {s: _read_listing(root, s) for s in listed}
            drives = sorted({drive_of(image) for found in every.values() for image, _ in found})
            drive = split.removeprefix(WITHOUT)
            if drive not in drives or (split.startswith(WITHOUT) and "train" not in every):
                raise DataError(
                    f"CamVid: no split {split!r} in {root!r} (splits there: {', '.join(listed) or 'none'}; drives: "
                    f"{', '.join(drives) or 'none'}, each a split of its own, or {WITHOUT}<drive>); expected the "
                    f"layout\n{_LAYOUT}"
                )
            if split.startswith(WITHOUT):
                pairs = [pair for pair in every["train"] if drive_of(pair[0]) != drive]
            else:
                pairs = [pair for s in listed for pair in every[s] if drive_of(pair[0]) == drive]
            if not pairs:
                raise DataError(f"CamVid: split {split!r} of {root!r} holds no images: train has no other drive")
        self.root, self.split = root, split
        super().__init__(pairs, CAMVID_CLASSES, f"CamVid {split}")

    def drives(self) -> dict[str, int]:
        """How many images of each drive this split holds, e.g. {'0001TP': 62, '0006R0': 101, '0016E5': 204}."""
        found = [drive_of(image) for image, _ in self.pairs]
        return {d: found.count(d) for d in sorted(set(found))}

    def read_label(self, path: str) -> np.ndarray:
        label = read_label_image(path)
        label[label == CAMVID_VOID] = IGNORE
        return label

    def __repr__(self) -> str:
        return f"CamVid({self.root!r}, {self.split!r}, {len(self)} images)"


def _read_listing(root: str, split: str) -> list[tuple[str, str]]:
    """The (image, label) paths that ``root/<split>.txt`` lists, below ``root``."""
    listing = os.path.join(root, f"{split}.txt")
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
    return pairs
