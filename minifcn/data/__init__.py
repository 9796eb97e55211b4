"""Datasets: the built-in synthetic Shapes (the default); PASCAL VOC, SBD and plain folders follow."""

from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import Shapes

__all__ = ["Shapes", "SHAPES_CLASSES"]
