"""Datasets and batches: the built-in synthetic Shapes (the default), PASCAL VOC, SBD, CamVid, plain folders.

Every dataset's item i is (uint8 RGB image (H, W, 3), int64 label (H, W)),
or (H, W, 4) with a depth channel for the RGB-D ones (``rgbd.py``), or with labels
(H, W, 2) for the two-task ones (``multitask.py``, which name their ``heads``),
with 255 marking pixels to ignore; ``classes`` names the classes and
``n_class`` counts them. ``Augment`` and ``BatchLoader`` turn a dataset into
training batches.
"""

from .balance import BALANCING, enet_weights, median_frequency_weights, read_class_weights
from .camvid import CAMVID_CLASSES, HELD_OUT_DRIVE, CamVid
from .files import IGNORE, DataError
from .folder import FolderSegmentation
from .loader import BatchLoader
from .multitask import SIFTFlow, TwoLabelShapes
from .rgbd import RGBDFolder, RGBDShapes
from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import Shapes
from .transforms import Augment
from .voc import VOC_CLASSES, SBDSegmentation, VOCSegmentation

__all__ = [
    "Shapes",
    "SHAPES_CLASSES",
    "VOCSegmentation",
    "SBDSegmentation",
    "VOC_CLASSES",
    "FolderSegmentation",
    "DataError",
    "IGNORE",
    "Augment",
    "BatchLoader",
    "RGBDShapes",
    "RGBDFolder",
    "TwoLabelShapes",
    "SIFTFlow",
    "CamVid",
    "CAMVID_CLASSES",
    "HELD_OUT_DRIVE",
    "median_frequency_weights",
    "enet_weights",
    "BALANCING",
    "read_class_weights",
]
