"""The ImageNet classifiers the FCNs start from: VGG16 and AlexNet (Sec. 3.1, 4.1).

They are here to hold ImageNet weights (``minifcn.weights``) and to be
convolutionalized (``minifcn.surgery``); the FCNs themselves never run them.
Each is an ``nn.Sequential`` with the reference's layer names, so their
parameters are ``conv1_1.weight`` ... ``fc8.bias``, as in the FCNs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn
from ..autograd import Tensor
from ..receptive import trace
from .backbones import ALEXNET_FC, ALEXNET_WIDTHS, alexnet_features, linear, vgg16_features, vgg16_widths


class Classifier(nn.Sequential):
    """A convolutional grid, then flatten and fully connected layers.

    Their fc6 takes a grid of fixed size (7x7 for VGG16), so only inputs
    that give that grid are accepted (224x224, the ImageNet size, and a few
    more). To score larger images, convolutionalize the classifier (Sec. 3.1).
    """

    input_size = 224  # the ImageNet training crop
    grid = 7  # pool5's size for that input, which fc6 expects

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: input must be (N, 3, H, W), got shape {x.shape}")
        rows_h, rows_w = trace(self, x.shape[2], axis=0), trace(self, x.shape[3], axis=1)
        last = next(reversed(rows_h))
        got = (rows_h[last].length, rows_w[last].length)
        if got != (self.grid, self.grid):
            raise ValueError(
                f"{type(self).__name__} classifies {self.input_size}x{self.input_size} images: its fc6 takes a "
                f"{self.grid}x{self.grid} {last} map, but a {x.shape[2]}x{x.shape[3]} input gives {got[0]}x{got[1]}. "
                "To score larger images, convolutionalize it (minifcn.surgery.convolutionalize)"
            )
        return super().forward(x)


class VGG16(Classifier):
    """VGG16 ("configuration D" of Simonyan and Zisserman), torchvision's layout, Caffe's names.

    conv1_1 ... conv5_3 (3x3, padding 1), floor-mode 2x2 max pooling, then
    fc6 (4096, 25088), fc7 (4096, 4096), fc8 (n_class, 4096) with ReLU and
    dropout 0.5 after fc6 and fc7. ``backbone='tiny'`` gives the same
    geometry with few channels.
    """

    def __init__(self, n_class: int = 1000, backbone: str = "vgg16", dtype: Any = np.float32):
        widths, fc = vgg16_widths(backbone)
        layers = vgg16_features(widths, first_padding=1, ceil_mode=False, dtype=dtype)
        layers.update(
            {
                "flatten": nn.Flatten(),
                "fc6": linear(widths[-1] * 7 * 7, fc, dtype),
                "relu6": nn.ReLU(),
                "drop6": nn.Dropout(0.5),
                "fc7": linear(fc, fc, dtype),
                "relu7": nn.ReLU(),
                "drop7": nn.Dropout(0.5),
                "fc8": linear(fc, n_class, dtype),
            }
        )
        super().__init__(layers)
        self.n_class, self.backbone = n_class, backbone


class AlexNet(Classifier):
    """AlexNet as torchvision has it (no channel groups, no local response normalisation).

    conv1 (11x11, stride 4, padding 2) ... conv5, floor-mode 3x3 stride-2
    max pooling, then dropout, fc6 (4096, 9216), dropout, fc7, fc8.
    """

    grid = 6

    def __init__(self, n_class: int = 1000, dtype: Any = np.float32):
        layers = alexnet_features(first_padding=2, ceil_mode=False, dtype=dtype)
        layers.update(
            {
                "flatten": nn.Flatten(),
                "drop6": nn.Dropout(0.5),
                "fc6": linear(ALEXNET_WIDTHS[-1] * 6 * 6, ALEXNET_FC, dtype),
                "relu6": nn.ReLU(),
                "drop7": nn.Dropout(0.5),
                "fc7": linear(ALEXNET_FC, ALEXNET_FC, dtype),
                "relu7": nn.ReLU(),
                "fc8": linear(ALEXNET_FC, n_class, dtype),
            }
        )
        super().__init__(layers)
        self.n_class = n_class
