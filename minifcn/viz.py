"""Pictures of label maps: palettes (PASCAL VOC's, CamVid's), colourised masks, overlays on images.

A palette is named by its dataset: ``"voc"`` (the default: VOC, SBD, Shapes,
folders) or ``"camvid"``. Each dataset says which it uses in its
``palette`` attribute, and checkpoints through the dataset they were
trained on, so every picture of CamVid is drawn in CamVid's colours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image


def voc_palette() -> np.ndarray:
    """(256, 3) uint8: the colour of each label in PASCAL VOC's palette PNGs (255, 'void', is cream).

    Label k's bits are dealt out to the three channels, most significant
    first: bit 0 of k sets bit 7 of red, bit 1 of green, bit 2 of blue, bit 3
    sets bit 6 of red, and so on, which keeps neighbouring labels far apart.
    """
    k = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for step in range(8):  # three bits of k per step, to bit 7 - step of each channel
        for channel in range(3):
            palette[:, channel] |= ((k >> (3 * step + channel)) & 1) << (7 - step)
    return palette.astype(np.uint8)


#: CamVid's customary class colours (those of the SegNet tutorial), index order; void (255) is black.
CAMVID_COLOURS = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)


def camvid_palette() -> np.ndarray:
    """(256, 3) uint8: CamVid's 11 class colours, then black (void, 255, and any other value)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(CAMVID_COLOURS)] = CAMVID_COLOURS
    return palette


#: palette name -> (colours (256, 3), labels an overlay leaves unpainted)
PALETTES = {"voc": (voc_palette, (0, 255)), "camvid": (camvid_palette, (255,))}


def palette_colours(name: str) -> np.ndarray:
    """The (256, 3) colours of the palette called ``name`` ('voc' or 'camvid')."""
    if name not in PALETTES:
        raise ValueError(f"unknown palette {name!r}: expected one of {', '.join(PALETTES)}")
    return PALETTES[name][0]()


def colorize(label: Any, palette: str = "voc") -> Image.Image:
    """A palette-mode ('P') PIL image of an (H, W) integer label map, coloured with ``palette``.

    Saved as PNG, its pixel values are the labels themselves (as VOC stores them).
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"colorize: expected an (H, W) label map, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"colorize: labels must lie in [0, 255], got {label.min()}..{label.max()}")
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette(palette_colours(palette).reshape(-1).tolist())
    return image


def overlay(image: Any, label: Any, alpha: float = 0.5, palette: str = "voc") -> Image.Image:
    """An RGB image: ``image`` (H, W, 3 uint8) with each labelled pixel blended towards its class colour.

    Void (255) pixels are left as they are, and so is VOC's background (0);
    CamVid has no background class, so every other pixel is painted.
    """
    image, label = np.asarray(image), np.asarray(label)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != label.shape:
        raise ValueError(f"overlay: image {image.shape} and label {label.shape} must be (H, W, 3) and (H, W)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    colours = palette_colours(palette)[label.astype(np.int64).clip(0, 255)].astype(np.float32)
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colours
    marked = ~np.isin(label, PALETTES[palette][1])[..., None]
    out = np.where(marked, blend, image.astype(np.float32))
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="RGB")
