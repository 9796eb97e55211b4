"""Initialisers, among them the bilinear upsampling kernel of Sec. 3.3."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import rng


def uniform_fan_in(shape: tuple, fan_in: int, dtype: Any = np.float32) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for convolution weights and biases."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape, dtype)


def he_normal(shape: tuple, fan_in: int, dtype: Any = np.float32) -> np.ndarray:
    """N(0, 2 / fan_in) (He et al., 2015): keeps the scale of activations through a deep stack of ReLU layers.

    The FCN trunks use it when they start from scratch (the tiny backbone);
    the paper always started from ImageNet weights instead.
    """
    return rng.normal(np.sqrt(2.0 / fan_in), shape, dtype)


def bilinear_kernel(size: int, dtype: Any = np.float32) -> np.ndarray:
    """The (size, size) kernel of bilinear interpolation for upsampling by ``(size + 1) // 2``.

    Sec. 3.3: upsampling by a factor f is a transposed convolution with stride f;
    initialised with this kernel (size 2f), it is bilinear interpolation.
    Each tap weighs 1 - distance / f from the kernel's centre, along each axis.
    """
    f = (size + 1) // 2
    center = f - 1 if size % 2 == 1 else f - 0.5
    taps = 1.0 - np.abs(np.arange(size) - center) / f
    return np.outer(taps, taps).astype(dtype)


def bilinear_upsampling_weight(channels: int, kernel_size: int, dtype: Any = np.float32) -> np.ndarray:
    """A (channels, channels, K, K) transposed-convolution weight: each channel upsamples only itself."""
    weight = np.zeros((channels, channels, kernel_size, kernel_size), dtype=dtype)
    weight[np.arange(channels), np.arange(channels)] = bilinear_kernel(kernel_size, dtype)
    return weight
