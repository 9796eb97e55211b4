"""How images are prepared for a network: channel order, scale, mean and standard deviation.

ImageNet weights only work on images prepared the way they were trained:

    CAFFE         BGR, 0..255, minus the mean pixel (104.00699, 116.66877, 122.67892);
                  the reference FCNs and Caffe's VGG16 weights (the paper's start)
    TORCHVISION   RGB, scaled to 0..1, minus the ImageNet mean, divided by its std

``minifcn.weights`` records which one each file needs, a checkpoint records
the one its net was trained with (``checkpoint.preprocessing_of``), and the
batches apply it. Where a run starts from scratch (``minifcn.start``), a
trunk of no ImageNet classifier's widths (tiny, tiny-bn, small-bn,
tiny-googlenet) sees TORCHVISION's (inputs near unit scale suit batch norm
and Adam); a full-size one CAFFE's, the paper's.

RGB-D images (``minifcn.data.rgbd``) carry depth as a fourth channel;
CAFFE_RGBD and TORCHVISION_RGBD prepare the colour as their RGB versions do
and map the depth channel's 0..255 to about -2..2 (mean 128, std 64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """An (H, W, C) uint8 image (RGB, or RGB-D) -> a float32 (C, H, W) network input, and back."""

    name: str
    channel_order: str  # 'RGB' or 'BGR': the order of the network's colour channels (depth stays last)
    scale: float  # applied to the 0..255 values first
    mean: tuple[float, ...]  # then subtracted, per channel, in channel_order (one per channel)
    std: tuple[float, ...]  # then divided by

    @property
    def channels(self) -> int:
        return len(self.mean)

    def __call__(self, image: Any) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != self.channels:
            kind = "RGB" if self.channels == 3 else "RGB-D"
            raise ValueError(
                f"preprocessing {self.name}: expected an (H, W, {self.channels}) {kind} image, got shape {image.shape}"
            )
        x = image.astype(np.float32)
        if self.channel_order == "BGR":
            x = np.concatenate([x[:, :, 2::-1], x[:, :, 3:]], axis=2)
        x = (x * np.float32(self.scale) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def invert(self, x: Any) -> np.ndarray:
        """A (C, H, W) network input back to its (H, W, 3) uint8 RGB image (for pictures; depth is dropped)."""
        x = np.asarray(x, dtype=np.float32).transpose(1, 2, 0)[:, :, :3]
        x = (x * np.asarray(self.std[:3], np.float32) + np.asarray(self.mean[:3], np.float32)) / np.float32(self.scale)
        if self.channel_order == "BGR":
            x = x[:, :, ::-1]
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


CAFFE = Preprocessing("caffe", "BGR", 1.0, (104.00699, 116.66877, 122.67892), (1.0, 1.0, 1.0))
TORCHVISION = Preprocessing("torchvision", "RGB", 1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# Depth: 0..255 minus 128, over 64 (its scale is undone first, so the same numbers whatever ``scale`` is).
CAFFE_RGBD = Preprocessing("caffe-rgbd", "BGR", 1.0, CAFFE.mean + (128.0,), CAFFE.std + (64.0,))
TORCHVISION_RGBD = Preprocessing(
    "torchvision-rgbd", "RGB", 1.0 / 255.0, TORCHVISION.mean + (128.0 / 255,), TORCHVISION.std + (64.0 / 255,)
)

BY_NAME = {p.name: p for p in (CAFFE, TORCHVISION, CAFFE_RGBD, TORCHVISION_RGBD)}


def with_depth(p: Preprocessing) -> Preprocessing:
    """The RGB-D version of an RGB preprocessing (an RGB-D one stays as it is)."""
    if p.channels == 4:
        return p
    return {CAFFE.name: CAFFE_RGBD, TORCHVISION.name: TORCHVISION_RGBD}[p.name]
