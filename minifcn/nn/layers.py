"""The layers the FCNs are built from: thin Modules over minifcn.functional."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..functional.geometry import pair
from .init import uniform_fan_in
from .module import Module
from .parameter import Parameter


def _with_layer_name(layer: Module, call: Any, *args: Any) -> Tensor:
    """Run an op; a ValueError or TypeError it raises gets the layer's name in front."""
    try:
        return call(*args)
    except (ValueError, TypeError) as e:
        raise type(e)(f"layer {layer.label()}: {e}") from None


class Conv2d(Module):
    """Convolution layer. weight (OC, C, KH, KW), bias (OC,), initialised as in PyTorch (uniform, 1/sqrt(fan_in))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        bias: bool = True,
        dtype: Any = np.float32,
    ):
        super().__init__()
        KH, KW = pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = (KH, KW), pair(stride, "stride")
        self.padding, self.dilation = pair(padding, "padding"), pair(dilation, "dilation")
        fan_in = in_channels * KH * KW
        self.weight = Parameter(uniform_fan_in((out_channels, in_channels, KH, KW), fan_in, dtype))
        self.bias = Parameter(uniform_fan_in((out_channels,), fan_in, dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return _with_layer_name(self, F.conv2d, x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}"
        )


class ConvTranspose2d(Module):
    """Transposed convolution ("deconvolution") layer. weight (C, OC, KH, KW); out = (H - 1) * s - 2p + KH."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        bias: bool = True,
        dtype: Any = np.float32,
    ):
        super().__init__()
        KH, KW = pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (KH, KW), pair(stride, "stride"), pair(padding, "padding")
        fan_in = out_channels * KH * KW  # as PyTorch counts it for transposed convolutions
        self.weight = Parameter(uniform_fan_in((in_channels, out_channels, KH, KW), fan_in, dtype))
        self.bias = Parameter(uniform_fan_in((out_channels,), fan_in, dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return _with_layer_name(self, F.conv_transpose2d, x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )


def _pool_geometry(kernel_size: Any, stride: Any, padding: Any) -> tuple[tuple[int, int], ...]:
    """(kernel, stride, padding) as pairs, the stride defaulting to the kernel (as Caffe and PyTorch)."""
    kernel = pair(kernel_size, "kernel_size")
    return kernel, kernel if stride is None else pair(stride, "stride"), pair(padding, "padding")


class MaxPool2d(Module):
    """Max pooling layer; ``dilation`` spaces the window's taps (used by minifcn.stitch's dilated nets)."""

    def __init__(
        self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False, dilation: Any = 1
    ):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pool_geometry(kernel_size, stride, padding)
        self.dilation, self.ceil_mode = pair(dilation, "dilation"), ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return _with_layer_name(
            self, F.max_pool2d, x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode
        )

    def extra_repr(self) -> str:
        dilation = "" if self.dilation == (1, 1) else f", dilation={self.dilation}"
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"ceil_mode={self.ceil_mode}{dilation}"
        )


class AvgPool2d(Module):
    """Average pooling layer (padding counted in the divisor, as Caffe)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pool_geometry(kernel_size, stride, padding)
        self.dilation, self.ceil_mode = (1, 1), ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return _with_layer_name(self, F.avg_pool2d, x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"
        )


class Linear(Module):
    """Fully connected layer. weight (OUT, IN), bias (OUT,), initialised as in PyTorch (uniform, 1/sqrt(IN))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(uniform_fan_in((out_features, in_features), in_features, dtype))
        self.bias = Parameter(uniform_fan_in((out_features,), in_features, dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return _with_layer_name(self, F.linear, x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W): where a classifier leaves the image grid for its fully connected layers."""

    def forward(self, x: Tensor) -> Tensor:
        return _with_layer_name(self, F.flatten, x)


class Scale(Module):
    """Multiply by a fixed number (no parameter); the at-once FCN-8s scales pool4 by 0.01 and pool3 by 0.0001."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: Tensor) -> Tensor:
        return F.mul(x, self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


class LocalResponseNorm(Module):
    """Local response normalisation across ``size`` channels (GoogLeNet's norm1 and norm2; Caffe's LRN)."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        return _with_layer_name(self, F.local_response_norm, x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class ReLU(Module):
    """max(x, 0); ``inplace=True`` overwrites its input's array (the trunks use it after each convolution)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class BatchNorm2d(Module):
    """Batch normalisation per channel (see ``minifcn.functional.norm``), as PyTorch's BatchNorm2d.

    Parameters ``weight`` (gamma, ones) and ``bias`` (beta, zeros) learn at the
    base rate without weight decay (decay_mult 0: decaying gamma would only
    fight the normalisation). Buffers ``running_mean`` (zeros) and
    ``running_var`` (ones) are saved in ``state_dict()``; ``eval()`` switches
    from the batch's statistics to them.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype: Any = np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype), decay_mult=0.0)
        self.bias = Parameter(np.zeros(num_features, dtype), decay_mult=0.0)
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))

    def forward(self, x: Tensor) -> Tensor:
        return _with_layer_name(
            self,
            F.batch_norm,
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}"


class Dropout(Module):
    """Inverted dropout while training; the identity after ``eval()``."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Sequential(Module):
    """Modules applied in order.

    ``Sequential(a, b, c)`` registers them as '0', '1', '2'; ``Sequential(dict)``
    (name -> module, as PyTorch's OrderedDict form) under the given names, so
    ``Sequential({"conv1_1": ..., "relu1_1": ...})`` has parameters ``conv1_1.weight``.
    """

    def __init__(self, *modules: Any):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            named = list(modules[0].items())
        else:
            named = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in named:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: {name!r} is a {type(m).__name__}, not a Module")
            setattr(self, name, m)

    def forward(self, x: Tensor) -> Tensor:
        for m in self.children():
            x = m(x)
        return x


# Layers that change no geometry: each output unit sees exactly its own input unit (at every pixel; LRN mixes
# channels only). Receptive fields pass through them, and shift-and-stitch keeps them as they are.
POINTWISE = (ReLU, Dropout, Scale, BatchNorm2d, LocalResponseNorm)
