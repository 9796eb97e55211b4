"""Layers and containers: Module, Parameter, and the layers the FCNs are built from."""

from .init import bilinear_kernel, bilinear_upsampling_weight, uniform_fan_in
from .layers import Conv2d, ConvTranspose2d, Dropout, MaxPool2d, ReLU, Sequential
from .module import Module
from .parameter import Parameter

__all__ = [
    "Module", "Parameter", "Sequential", "Conv2d", "ConvTranspose2d", "MaxPool2d", "ReLU", "Dropout",
    "bilinear_kernel", "bilinear_upsampling_weight", "uniform_fan_in",
]  # fmt: skip
