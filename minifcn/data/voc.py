"""PASCAL VOC segmentation (the paper's benchmark, Sec. 4-5) and SBD's extra labels.

VOC's devkit layout::

    <root>/VOC2012/JPEGImages/<id>.jpg
    <root>/VOC2012/SegmentationClass/<id>.png      palette PNG: index = class, 255 = void
    <root>/VOC2012/ImageSets/Segmentation/<split>.txt

SBD (Hariharan et al.'s Semantic Boundaries Dataset, 11355 images with
VOC classes, which the paper trains on)::

    <root>/dataset/img/<id>.jpg
    <root>/dataset/cls/<id>.mat                    GTcls.Segmentation: index = class
    <root>/dataset/<split>.txt                     train (8498) or val (2857)

The paper's validation set ``seg11valid`` is VOC2011 val without the images
that SBD trains on (736 images): ``SBDSegmentation(root, 'seg11valid',
voc_root=...)`` builds it from the two lists and reads VOC2011's files.
"""

from __future__ import annotations

import os

from .files import DataError, SegmentationFiles, read_label_mat, read_list, require_dir

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

_VOC_LAYOUT = """  <root>/VOC{year}/JPEGImages/<id>.jpg
  <root>/VOC{year}/SegmentationClass/<id>.png
  <root>/VOC{year}/ImageSets/Segmentation/<split>.txt
(root may also be the VOC{year} folder itself)"""

_SBD_LAYOUT = """  <root>/dataset/img/<id>.jpg
  <root>/dataset/cls/<id>.mat
  <root>/dataset/<split>.txt   (train or val)
(root may also be the dataset folder itself)"""


def voc_folder(root: str, year: str = "2012") -> str:
    """The VOC<year> folder: ``root/VOC<year>`` of a devkit, or ``root`` itself when it is that folder."""
    root = os.fspath(root)
    for folder in (os.path.join(root, f"VOC{year}"), root):
        if os.path.isdir(os.path.join(folder, "ImageSets", "Segmentation")):
            return folder
    require_dir(root, "VOCSegmentation", _VOC_LAYOUT.format(year=year))
    raise DataError(
        f"VOCSegmentation: {root!r} holds neither VOC{year}/ImageSets/Segmentation nor "
        f"ImageSets/Segmentation; expected the layout\n{_VOC_LAYOUT.format(year=year)}"
    )


def _voc_pairs(folder: str, ids: list[str]) -> list[tuple[str, str]]:
    return [
        (os.path.join(folder, "JPEGImages", i + ".jpg"), os.path.join(folder, "SegmentationClass", i + ".png"))
        for i in ids
    ]


class VOCSegmentation(SegmentationFiles):
    """PASCAL VOC: item i is (uint8 RGB (H, W, 3), int64 label (H, W)), 21 classes, 255 on object borders.

    ``root``: the devkit folder holding ``VOC2012/`` (or ``VOC<year>/``), or
    that folder itself. ``split``: a list under ``ImageSets/Segmentation``
    ('train', 'val', 'trainval', ...). The labels are the palette PNGs'
    indices as they are; 255 stays (the loss and the metrics ignore it).
    """

    def __init__(self, root: str, split: str = "val", year: str = "2012"):
        self.root, self.split = root, split
        folder = voc_folder(root, year)
        ids = read_list(os.path.join(folder, "ImageSets", "Segmentation", split + ".txt"), "VOCSegmentation")
        super().__init__(_voc_pairs(folder, ids), VOC_CLASSES, "VOCSegmentation")

    def __repr__(self) -> str:
        return f"VOCSegmentation(root={self.root!r}, split={self.split!r}, {len(self)} images)"


def sbd_folder(root: str) -> str:
    """SBD's ``dataset`` folder: ``root/dataset``, or ``root`` itself when it is that folder."""
    root = os.fspath(root)
    for folder in (os.path.join(root, "dataset"), root):
        if os.path.isdir(os.path.join(folder, "cls")) and os.path.isdir(os.path.join(folder, "img")):
            return folder
    require_dir(root, "SBDSegmentation", _SBD_LAYOUT)
    raise DataError(
        f"SBDSegmentation: {root!r} holds neither dataset/img and dataset/cls nor img and cls; "
        f"expected the layout\n{_SBD_LAYOUT}"
    )


class SBDSegmentation(SegmentationFiles):
    """SBD: item i is (uint8 RGB (H, W, 3), int64 label (H, W)) with VOC's 21 classes.

    ``split``: 'train' or 'val' (SBD's own lists), or 'seg11valid': the
    paper's validation images, VOC2011 val minus SBD train, read from the
    VOC2011 folder given as ``voc_root`` (a devkit holding ``VOC2011/`` or
    that folder). SBD's labels have no 255 border; VOC's (seg11valid) do.
    """

    def __init__(self, root: str, split: str = "train", voc_root: str | None = None):
        self.root, self.split = root, split
        folder = sbd_folder(root)
        if split == "seg11valid":
            if voc_root is None:
                raise DataError(
                    "SBDSegmentation: split 'seg11valid' needs voc_root, the VOC2011 devkit "
                    "(its val images that SBD does not train on)"
                )
            sbd_train = set(read_list(os.path.join(folder, "train.txt"), "SBDSegmentation"))
            voc = voc_folder(voc_root, "2011")
            voc_val = read_list(os.path.join(voc, "ImageSets", "Segmentation", "val.txt"), "SBDSegmentation")
            ids = [i for i in voc_val if i not in sbd_train]
            if not ids:
                raise DataError(
                    f"SBDSegmentation: seg11valid is empty: every VOC2011 val image of {voc!r} is in SBD's train list"
                )
            super().__init__(_voc_pairs(voc, ids), VOC_CLASSES, "SBDSegmentation")
            self._mat = False
            return
        ids = read_list(os.path.join(folder, split + ".txt"), "SBDSegmentation")
        pairs = [(os.path.join(folder, "img", i + ".jpg"), os.path.join(folder, "cls", i + ".mat")) for i in ids]
        super().__init__(pairs, VOC_CLASSES, "SBDSegmentation")
        self._mat = True

    def read_label(self, path: str):
        if self._mat:
            return read_label_mat(path, "GTcls", "Segmentation")
        return super().read_label(path)

    def __repr__(self) -> str:
        return f"SBDSegmentation(root={self.root!r}, split={self.split!r}, {len(self)} images)"
