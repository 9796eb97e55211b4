"""Data with two labels per pixel (Sec. 5, SIFT Flow): item i is (uint8 RGB (H, W, 3), int64 labels (H, W, 2)).

    TwoLabelShapes   Shapes labelled twice: by shape (6 classes, as Shapes) and by colour
                     (background, warm, cool): two tasks that need different features
    SIFTFlow         the SIFT Flow dataset as the reference code lays it out:
                     <root>/{trainval,test}.txt (image names),
                     <root>/Images/spatial_envelope_256x256_static_8outdoorcategories/<name>.jpg,
                     <root>/SemanticLabels/.../<name>.mat and <root>/GeoLabels/.../<name>.mat
                     (a matrix 'S' each: 1..33 semantic and 1..3 geometric, 0 unlabelled)

``head_classes`` names the tasks and each task's classes, in the order of the
label's last axis (``minifcn.heads.Heads.of_dataset`` reads it); ``heads``
counts them, as ``MultiHeadFCN`` is built.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.io import loadmat

from .files import DataError, read_image, read_list, require_dir
from .shapes import CLASSES, Shapes, paint_contrasting, render

COLOUR_CLASSES = ("background", "warm", "cool")
SIFTFLOW_SEMANTIC = (
    "awning",
    "balcony",
    "bird",
    "boat",
    "bridge",
    "building",
    "bus",
    "car",
    "cow",
    "crosswalk",
    "desert",
    "door",
    "fence",
    "field",
    "grass",
    "moon",
    "mountain",
    "person",
    "plant",
    "pole",
    "river",
    "road",
    "rock",
    "sand",
    "sea",
    "sidewalk",
    "sign",
    "sky",
    "staircase",
    "streetlight",
    "sun",
    "tree",
    "window",
)
SIFTFLOW_GEOMETRIC = ("sky", "horizontal", "vertical")
_SIFTFLOW_SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"


class TwoLabelShapes(Shapes):
    """Shapes with two labels per pixel: [..., 0] the shape's class (0-5), [..., 1] its colour (0-2).

    A shape is 'warm' when its red exceeds its blue, 'cool' otherwise; colours
    are drawn independently of the shape, so neither task answers the other.
    """

    head_classes = {"shape": CLASSES, "colour": COLOUR_CLASSES}
    heads = {name: len(names) for name, names in head_classes.items()}  # name -> n_class, as MultiHeadFCN takes
    classes = CLASSES  # the first head's, for code that expects one list
    n_class = len(CLASSES)

    _STREAM = (2,)

    def _render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        painted = []

        def paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
            paint_contrasting(rng, image, mask)
            red, _, blue = image[mask].mean(axis=0)
            painted.append((mask, 1 if red > blue else 2))

        image, shape_label = render(rng, self.size, paint)
        colour_label = np.zeros_like(shape_label)
        for mask, colour in painted:
            colour_label[mask] = colour
        return image, np.stack([shape_label, colour_label], axis=2)


class SIFTFlow:
    """SIFT Flow: 2688 outdoor images, 256x256, each labelled with 33 semantic and 3 geometric classes."""

    head_classes = {"semantic": SIFTFLOW_SEMANTIC, "geometric": SIFTFLOW_GEOMETRIC}
    heads = {name: len(names) for name, names in head_classes.items()}
    classes = SIFTFLOW_SEMANTIC
    n_class = len(SIFTFLOW_SEMANTIC)

    def __init__(self, root: str, split: str = "trainval"):
        layout = (
            f"  {root}/{{trainval,test}}.txt\n  {root}/Images/{_SIFTFLOW_SUBDIR}/<name>.jpg\n"
            f"  {root}/SemanticLabels/{_SIFTFLOW_SUBDIR}/<name>.mat\n  {root}/GeoLabels/{_SIFTFLOW_SUBDIR}/<name>.mat"
        )
        require_dir(root, "SIFT Flow", layout)
        self.root, self.split = root, split
        self.names = read_list(os.path.join(root, f"{split}.txt"), f"SIFT Flow split {split!r}")
        for name in self.names:
            for path in self._paths(name):
                if not os.path.isfile(path):
                    raise DataError(
                        f"SIFT Flow: {path!r} is missing (listed in {split}.txt); expected the layout\n{layout}"
                    )

    def _paths(self, name: str) -> tuple[str, str, str]:
        return (
            os.path.join(self.root, "Images", _SIFTFLOW_SUBDIR, name + ".jpg"),
            os.path.join(self.root, "SemanticLabels", _SIFTFLOW_SUBDIR, name + ".mat"),
            os.path.join(self.root, "GeoLabels", _SIFTFLOW_SUBDIR, name + ".mat"),
        )

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, semantic_path, geometric_path = self._paths(self.names[i])
        image = read_image(image_path)
        labels = []
        for path, n in ((semantic_path, self.heads["semantic"]), (geometric_path, self.heads["geometric"])):
            raw = _read_s_matrix(path)
            if raw.shape != image.shape[:2]:
                raise DataError(
                    f"SIFT Flow: label {path!r} is {raw.shape[1]}x{raw.shape[0]}, its image "
                    f"{image.shape[1]}x{image.shape[0]}"
                )
            if raw.min() < -1 or raw.max() > n:
                raise DataError(f"SIFT Flow: label {path!r} has values outside 0..{n}: {np.unique(raw).tolist()[:8]}")
            # 1..n are the classes, 0 (and -1 in some geometric files) unlabelled: shift to 0..n-1, void 255.
            labels.append(np.where(raw >= 1, raw - 1, 255))
        return image, np.stack(labels, axis=2)

    def name(self, i: int) -> str:
        return self.names[i]

    def __repr__(self) -> str:
        return f"SIFTFlow({self.root!r}, {self.split!r}, {len(self)} images)"


def _read_s_matrix(path: str) -> np.ndarray:
    try:
        data = loadmat(path)
    except Exception as e:  # scipy raises several kinds for a damaged file
        raise DataError(f"SIFT Flow: label {path!r} cannot be read ({e})") from None
    if "S" not in data:
        raise DataError(
            f"SIFT Flow: label {path!r} has no matrix 'S' "
            f"(it holds {sorted(k for k in data if not k.startswith('__'))})"
        )
    return np.asarray(data["S"]).astype(np.int64)
