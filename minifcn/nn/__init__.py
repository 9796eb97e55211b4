"""Layers and containers: Module, Parameter, and the layers the FCNs are built from."""

from .inception import Inception
from .init import bilinear_kernel, bilinear_upsampling_weight, he_normal, uniform_fan_in
from .layers import (
    POINTWISE,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    Scale,
    Sequential,
)
from .module import Module
from .parameter import Parameter
from .statistics import recompute_batch_norm

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "AvgPool2d",
    "ReLU",
    "Dropout",
    "Linear",
    "Flatten",
    "Scale",
    "BatchNorm2d",
    "LocalResponseNorm",
    "Inception",
    "recompute_batch_norm",
    "bilinear_kernel",
    "bilinear_upsampling_weight",
    "uniform_fan_in",
    "he_normal",
    "POINTWISE",
]
