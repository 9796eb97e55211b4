"""The classifier trunks the FCNs are built on (Sec. 3.1, 4.1): VGG16, AlexNet, GoogLeNet, and tiny versions.

Each builder returns the layers as an ordered dict, name -> Module, with the
names of the reference Caffe networks, so that the models can register them
as attributes (parameters ``conv1_1.weight`` ...) and run them in order.

``tiny`` is VGG16 with few channels: every kernel, stride and padding is the
same, so its receptive fields, crops and output sizes are exactly VGG16's,
but it trains on a laptop CPU. It exists for tests and lessons.

``tiny-bn`` is ``tiny`` with batch normalisation after every convolution
(conv1_1, bn1_1, relu1_1, ...; fc6, bn6, relu6, ...) and no dropout. The
paper has neither, but from scratch the plain deep trunk learns too slowly
for a few minutes on a CPU (benchmarks/RESULTS.md measures how much). The
geometry, and so every receptive field and crop, is unchanged.
``small-bn`` is ``tiny-bn`` four times as wide in its first two stages and
twice as wide after them, fc6 and fc7 included: 16-32-64-128-256 channels
and 512, about 4.4 million weights against tiny-bn's 1.1 million. Its
step costs a few times tiny-bn's on a CPU, little more on a GPU, and on
CamVid's held-out drive it scores higher in the same iterations
(docs/camvid.md, benchmarks/RESULTS.md).

``googlenet`` is GoogLeNet (Szegedy et al.) up to inception_5b, the third
trunk of the paper's Table 1; as the paper did, its final average pooling
is dropped and its classifier becomes the 1x1 score layer. It has two LRN
layers and nine inception modules (``nn.Inception``). ``tiny-googlenet``
has every width divided by 16, for tests.

Weights start He-normal and biases zero (ImageNet weights replace them via
``minifcn.weights``); biases learn at twice the rate without weight decay
(lr_mult 2, decay_mult 0), as in every reference network.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn

VGG16_WIDTHS, VGG16_FC = (64, 128, 256, 512, 512), 4096
TINY_WIDTHS, TINY_FC = (4, 8, 32, 64, 128), 256  # narrow where maps are large, wide where small
SMALL_WIDTHS, SMALL_FC = (16, 32, 64, 128, 256), 512
ALEXNET_WIDTHS, ALEXNET_FC = (64, 192, 384, 256, 256), 4096  # torchvision's AlexNet (no channel groups)

BACKBONES = ("vgg16", "tiny", "tiny-bn", "small-bn", "alexnet", "googlenet", "tiny-googlenet")
VGG16_GEOMETRY = ("vgg16", "tiny", "tiny-bn", "small-bn")  # VGG16's kernels, strides and padding at other widths
WITH_BATCH_NORM = ("tiny-bn", "small-bn")
FROM_SCRATCH = ("tiny", "tiny-bn", "small-bn", "tiny-googlenet")  # no ImageNet classifier has their widths
ONLY_FCN32S = ("alexnet", "googlenet", "tiny-googlenet")  # trunks the paper used for FCN-32s alone (Table 1)
#: fc6's kernel: the pool5 grid the ImageNet classifier saw at 224x224 (GoogLeNet has no fc6).
FC6_KERNEL = {"vgg16": 7, "tiny": 7, "tiny-bn": 7, "small-bn": 7, "alexnet": 6}

#: GoogLeNet's inception modules: name -> (n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj), in order;
#: each stage ends in a 3x3 stride-2 max pooling (pool3 after 3b, pool4 after 4e).
GOOGLENET_INCEPTIONS = {
    "inception_3a": (64, 96, 128, 16, 32, 32), "inception_3b": (128, 128, 192, 32, 96, 64),
    "inception_4a": (192, 96, 208, 16, 48, 64), "inception_4b": (160, 112, 224, 24, 64, 64),
    "inception_4c": (128, 128, 256, 24, 64, 64), "inception_4d": (112, 144, 288, 32, 64, 64),
    "inception_4e": (256, 160, 320, 32, 128, 128),
    "inception_5a": (256, 160, 320, 32, 128, 128), "inception_5b": (384, 192, 384, 48, 128, 128),
}  # fmt: skip


def conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, dtype: Any = np.float32
) -> nn.Conv2d:
    """A convolution set up as in the FCNs: He-normal weights; zero biases at lr_mult 2, decay_mult 0."""
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dtype=dtype)
    layer.weight.data = nn.he_normal(layer.weight.shape, in_channels * kernel_size**2, dtype)
    layer.bias = nn.Parameter(np.zeros(out_channels, dtype), lr_mult=2.0, decay_mult=0.0)
    return layer


def relu() -> nn.ReLU:
    """The ReLU after a convolution (or its batch norm): in place, since nothing else reads that output."""
    return nn.ReLU(inplace=True)


def linear(in_features: int, out_features: int, dtype: Any = np.float32) -> nn.Linear:
    """A fully connected layer of the classifiers, initialised like ``conv``."""
    layer = nn.Linear(in_features, out_features, dtype=dtype)
    layer.weight.data = nn.he_normal(layer.weight.shape, in_features, dtype)
    layer.bias = nn.Parameter(np.zeros(out_features, dtype), lr_mult=2.0, decay_mult=0.0)
    return layer


def vgg16_widths(backbone: str) -> tuple[tuple[int, ...], int]:
    """(channels of the five conv stages, width of fc6 and fc7) of 'vgg16', 'tiny' or 'small'."""
    if backbone == "vgg16":
        return VGG16_WIDTHS, VGG16_FC
    if backbone == "tiny":
        return TINY_WIDTHS, TINY_FC
    if backbone == "small":
        return SMALL_WIDTHS, SMALL_FC
    raise ValueError(f"unknown VGG16 backbone {backbone!r}; choose 'vgg16', 'tiny' or 'small'")


def vgg16_features(widths: tuple[int, ...], first_padding: int, ceil_mode: bool, dtype: Any) -> dict[str, nn.Module]:
    """conv1_1 ... pool5: thirteen 3x3 convolutions (padding 1) in five stages, each ending in 2x2 max pooling.

    The FCNs pad conv1_1 by 100 and pool in ceil mode (Sec. 4.1 and the
    reference nets); the ImageNet classifier pads by 1 and pools in floor mode.
    """
    c1, c2, c3, c4, c5 = widths
    pool = lambda: nn.MaxPool2d(2, stride=2, ceil_mode=ceil_mode)  # noqa: E731
    return {
        "conv1_1": conv(3, c1, 3, padding=first_padding, dtype=dtype), "relu1_1": relu(),
        "conv1_2": conv(c1, c1, 3, padding=1, dtype=dtype), "relu1_2": relu(),
        "pool1": pool(),  # 1/2
        "conv2_1": conv(c1, c2, 3, padding=1, dtype=dtype), "relu2_1": relu(),
        "conv2_2": conv(c2, c2, 3, padding=1, dtype=dtype), "relu2_2": relu(),
        "pool2": pool(),  # 1/4
        "conv3_1": conv(c2, c3, 3, padding=1, dtype=dtype), "relu3_1": relu(),
        "conv3_2": conv(c3, c3, 3, padding=1, dtype=dtype), "relu3_2": relu(),
        "conv3_3": conv(c3, c3, 3, padding=1, dtype=dtype), "relu3_3": relu(),
        "pool3": pool(),  # 1/8
        "conv4_1": conv(c3, c4, 3, padding=1, dtype=dtype), "relu4_1": relu(),
        "conv4_2": conv(c4, c4, 3, padding=1, dtype=dtype), "relu4_2": relu(),
        "conv4_3": conv(c4, c4, 3, padding=1, dtype=dtype), "relu4_3": relu(),
        "pool4": pool(),  # 1/16
        "conv5_1": conv(c4, c5, 3, padding=1, dtype=dtype), "relu5_1": relu(),
        "conv5_2": conv(c5, c5, 3, padding=1, dtype=dtype), "relu5_2": relu(),
        "conv5_3": conv(c5, c5, 3, padding=1, dtype=dtype), "relu5_3": relu(),
        "pool5": pool(),  # 1/32
    }  # fmt: skip


def alexnet_features(first_padding: int, ceil_mode: bool, dtype: Any) -> dict[str, nn.Module]:
    """conv1 ... pool5 of torchvision's AlexNet: 11x11 stride 4, 5x5, three 3x3; 3x3 stride-2 max pooling."""
    c1, c2, c3, c4, c5 = ALEXNET_WIDTHS
    pool = lambda: nn.MaxPool2d(3, stride=2, ceil_mode=ceil_mode)  # noqa: E731
    return {
        "conv1": conv(3, c1, 11, stride=4, padding=first_padding, dtype=dtype), "relu1": relu(),  # 1/4
        "pool1": pool(),  # 1/8
        "conv2": conv(c1, c2, 5, padding=2, dtype=dtype), "relu2": relu(),
        "pool2": pool(),  # 1/16
        "conv3": conv(c2, c3, 3, padding=1, dtype=dtype), "relu3": relu(),
        "conv4": conv(c3, c4, 3, padding=1, dtype=dtype), "relu4": relu(),
        "conv5": conv(c4, c5, 3, padding=1, dtype=dtype), "relu5": relu(),
        "pool5": pool(),  # 1/32
    }  # fmt: skip


def googlenet_features(divisor: int, first_padding: int, ceil_mode: bool, dtype: Any) -> dict[str, nn.Module]:
    """conv1 ... inception_5b of GoogLeNet, every width divided by ``divisor`` (16 for tiny-googlenet).

    conv1 7x7 stride 2, pool1, norm1 (LRN), conv2_reduce 1x1, conv2 3x3, norm2, pool2, inception 3a-3b,
    pool3, 4a-4e, pool4, 5a-5b: stride 32 at the end, as VGG16's pool5. Pooling is 3x3 with stride 2.
    """
    w = lambda n: max(1, n // divisor)  # noqa: E731
    pool = lambda: nn.MaxPool2d(3, stride=2, ceil_mode=ceil_mode)  # noqa: E731
    layers: dict[str, nn.Module] = {
        "conv1": conv(3, w(64), 7, stride=2, padding=first_padding, dtype=dtype), "relu1": relu(),  # 1/2
        "pool1": pool(), "norm1": nn.LocalResponseNorm(5, 1e-4, 0.75),  # 1/4
        "conv2_reduce": conv(w(64), w(64), 1, dtype=dtype), "relu2_reduce": relu(),
        "conv2": conv(w(64), w(192), 3, padding=1, dtype=dtype), "relu2": relu(),
        "norm2": nn.LocalResponseNorm(5, 1e-4, 0.75), "pool2": pool(),  # 1/8
    }  # fmt: skip
    make = lambda c_in, c_out, k, padding=0: conv(c_in, c_out, k, padding=padding, dtype=dtype)  # noqa: E731
    channels = w(192)
    for name, widths in GOOGLENET_INCEPTIONS.items():
        module = nn.Inception(channels, tuple(w(n) for n in widths), dtype, conv=make)
        layers[name] = module
        channels = module.out_channels
        if name in ("inception_3b", "inception_4e"):
            layers["pool3" if name == "inception_3b" else "pool4"] = pool()  # 1/16, then 1/32
    return layers


def fcn_trunk(
    backbone: str, dtype: Any, pad: int = 100, fc6_kernel: int | None = None
) -> tuple[dict[str, nn.Module], int]:
    """The FCN trunk of ``backbone``: its features with conv1 padded by ``pad`` (the paper's 100) and ceil-mode
    pooling, then fc6 and fc7 as convolutions (Sec. 3.1: fc6 covers pool5's 7x7 grid, 6x6 for AlexNet; fc7 is 1x1).
    ``fc6_kernel`` sets another fc6 size, for a trunk trained from scratch (``FCN``); None keeps the classifier's.
    GoogLeNet has no fc6 or fc7: its trunk ends at inception_5b and a dropout (0.4, its classifier's).
    Returns the layers and the width of the last layer, which score_fr reads."""
    if fc6_kernel is not None and (isinstance(fc6_kernel, bool) or not isinstance(fc6_kernel, (int, np.integer))):
        raise ValueError(f"fc6_kernel must be a whole number or None, got {fc6_kernel!r}")
    if fc6_kernel is not None and (fc6_kernel < 1 or backbone not in FC6_KERNEL):
        raise ValueError(
            f"fc6_kernel {fc6_kernel}: " + ("must be at least 1" if fc6_kernel < 1 else f"{backbone} has no fc6")
        )
    if backbone in ("googlenet", "tiny-googlenet"):
        layers = googlenet_features(16 if backbone == "tiny-googlenet" else 1, pad, True, dtype)
        layers["drop5"] = nn.Dropout(0.4)
        return layers, layers["inception_5b"].out_channels
    if backbone == "alexnet":
        layers, last, fc = alexnet_features(pad, True, dtype), ALEXNET_WIDTHS[-1], ALEXNET_FC
    elif backbone in VGG16_GEOMETRY:
        widths, fc = vgg16_widths(backbone.removesuffix("-bn"))
        layers, last = vgg16_features(widths, pad, True, dtype), widths[-1]
    else:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    k = fc6_kernel or FC6_KERNEL[backbone]
    layers.update({
        "fc6": conv(last, fc, k, dtype=dtype), "relu6": relu(), "drop6": nn.Dropout(0.5),  # 1/32
        "fc7": conv(fc, fc, 1, dtype=dtype), "relu7": relu(), "drop7": nn.Dropout(0.5),
    })  # fmt: skip
    if backbone in WITH_BATCH_NORM:
        layers = with_batch_norm(layers, dtype)
    return layers, fc


def with_batch_norm(layers: dict[str, nn.Module], dtype: Any) -> dict[str, nn.Module]:
    """The same trunk with a BatchNorm2d after every convolution and without dropout:
    conv1_1, bn1_1, relu1_1, ...; fc6, bn6, relu6; fc7, bn7, relu7."""
    out: dict[str, nn.Module] = {}
    for name, layer in layers.items():
        if isinstance(layer, nn.Dropout):
            continue
        out[name] = layer
        if isinstance(layer, nn.Conv2d):
            out["bn" + name.removeprefix("conv").removeprefix("fc")] = nn.BatchNorm2d(layer.out_channels, dtype=dtype)
    return out
