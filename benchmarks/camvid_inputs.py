"""An input that ``search_camvid.py`` tries beside TORCHVISION's normalisation: local contrast normalisation, the
input of SegNet-Basic (Badrinarayanan et al., TPAMI 2017), which scores 0.477 on CamVid's test split from scratch."""

from __future__ import annotations

import os
import sys

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from minifcn.preprocessing import TORCHVISION  # noqa: E402


def locally_normalised(sigma: float):
    """A preprocess, an (H, W, 3) image to (3, H, W): TORCHVISION's, then local contrast normalisation (Jarrett et
    al. 2009) with a Gaussian window of deviation ``sigma`` pixels (within 4 sigma, the edge pixel repeated beyond
    the border):

        v = x - G * mean_c(x),    s = sqrt(G * mean_c(v^2)),    y = v / max(s, mean(s))

    ``G *`` blurs over rows and columns; ``mean_c`` averages the three channels, ``mean(s)`` all of the image's
    pixels. Subtracting takes out each neighbourhood's light, dividing its contrast; the channels' differences, a
    pixel's hue, stay. Where the image is flat, the image's mean contrast divides instead, so flat regions are not
    blown up; an image without any contrast becomes zeros. In float64; float32 out."""

    def preprocess(image: np.ndarray) -> np.ndarray:
        x = TORCHVISION(image).astype(np.float64)
        v = x - ndimage.gaussian_filter(x.mean(axis=0), sigma, mode="nearest")
        s = np.sqrt(ndimage.gaussian_filter((v * v).mean(axis=0), sigma, mode="nearest"))
        return (v / np.maximum(s, max(s.mean(), 1e-6))).astype(np.float32)

    return preprocess
