"""How images are prepared for a network: channel order, scale, mean and standard deviation.

ImageNet weights only work on images prepared the way they were trained:

    CAFFE         BGR, 0..255, minus the mean pixel (104.00699, 116.66877, 122.67892);
                  the reference FCNs and Caffe's VGG16 weights (the paper's start)
    TORCHVISION   RGB, scaled to 0..1, minus the ImageNet mean, divided by its std

``minifcn.weights`` records which one each file needs; the data pipeline
applies it. Networks trained from scratch use CAFFE, the project's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """An (H, W, 3) uint8 RGB image -> a float32 (3, H, W) network input, and back."""

    name: str
    channel_order: str  # 'RGB' or 'BGR': the order of the network's input channels
    scale: float  # applied to the 0..255 values first
    mean: tuple[float, float, float]  # then subtracted, per channel, in channel_order
    std: tuple[float, float, float]  # then divided by

    def __call__(self, image: Any) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"preprocessing {self.name}: expected an (H, W, 3) RGB image, got shape {image.shape}")
        x = image.astype(np.float32)
        if self.channel_order == "BGR":
            x = x[:, :, ::-1]
        x = (x * np.float32(self.scale) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def invert(self, x: Any) -> np.ndarray:
        """A (3, H, W) network input back to an (H, W, 3) uint8 RGB image (for pictures)."""
        x = np.asarray(x, dtype=np.float32).transpose(1, 2, 0)
        x = (x * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)) / np.float32(self.scale)
        if self.channel_order == "BGR":
            x = x[:, :, ::-1]
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


CAFFE = Preprocessing("caffe", "BGR", 1.0, (104.00699, 116.66877, 122.67892), (1.0, 1.0, 1.0))
TORCHVISION = Preprocessing("torchvision", "RGB", 1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

BY_NAME = {p.name: p for p in (CAFFE, TORCHVISION)}
