"""Shift-and-stitch, and the dilated ("rarefied") network that computes the same dense output (Sec. 3.2).

A net whose layers subsample by a total factor f gives one output per f x f
block of input pixels. OverFeat's trick gets a dense output from it anyway:
run the net f^2 times, on the input shifted by every (dy, dx) with
0 <= dy, dx < f, and interlace the f^2 coarse outputs::

    dense[:, :, dy::f, dx::f] = net(x[:, :, dy:, dx:])        # shift_and_stitch

The paper shows the same output from ONE pass of a changed net: set the
stride of each subsampling layer to 1, and "rarefy" every filter after it,
spreading its taps s apart with zeros between them,

    f'_ij = f_(i/s, j/s)   if s divides both i and j, else 0    # rarefy

which is a convolution with dilation s (``dilated_equivalent`` builds that
net). The two agree exactly for nets of unpadded layers in floor mode; a test
and lesson 04 check it. The paper then sets the trick aside: the dilated net
computes f^2 times as many outputs in every layer after the first
subsampling, and its filters never see finer information than before.
Learned upsampling (Sec. 3.3) is cheaper and learns to fill in the detail.

Shapes: x (N, C, H, W) -> dense (N, K, L_H, L_W), where L_H = H - R + 1 for a
net of receptive field R: one output per window position, at stride 1.
"""

from __future__ import annotations

from typing import Any, Callable

from . import nn
from .autograd import Tensor, no_grad
from .backend import get_array_module
from .functional.geometry import conv_output_size, pool_output_size


def shift_and_stitch(net: Callable[[Tensor], Tensor], x: Any, factor: int | None = None) -> Any:
    """The dense output of ``net`` (total subsampling ``factor``) by f^2 shifted passes, interlaced.

    ``factor`` defaults to ``output_stride(net)`` for an ``nn.Sequential``; for
    any other callable, give it (a wrong one is caught only when the outputs'
    sizes cannot interlace).

    Pass (dy, dx) drops the first dy rows and dx columns of ``x`` (the image
    moved up and left under the net's output grid), so its output (i, j) is
    the net's answer for the window starting at input pixel
    (dy + f*i, dx + f*j), and goes to dense[dy + f*i, dx + f*j].
    Returns an array on ``x``'s device.
    """
    data = x.data if isinstance(x, Tensor) else x
    if factor is None:
        if not isinstance(net, nn.Sequential):
            raise TypeError("shift_and_stitch: give the factor for a net that is not an nn.Sequential")
        factor = output_stride(net)
    if data.ndim != 4:
        raise ValueError(f"shift_and_stitch: x must be (N, C, H, W), got shape {data.shape}")
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"shift_and_stitch: factor must be a positive int, got {factor!r}")
    with no_grad():
        outs = {(dy, dx): net(Tensor(data[:, :, dy:, dx:])).data for dy in range(factor) for dx in range(factor)}
    counts = [[outs[dy, dx].shape[2:] for dx in range(factor)] for dy in range(factor)]
    rows = [counts[dy][0][0] for dy in range(factor)]
    cols = [counts[0][dx][1] for dx in range(factor)]
    L_H, L_W = sum(rows), sum(cols)
    for dy in range(factor):
        for dx in range(factor):
            expected = (len(range(dy, L_H, factor)), len(range(dx, L_W, factor)))
            if tuple(outs[dy, dx].shape[2:]) != expected:
                raise ValueError(
                    f"shift_and_stitch: the pass shifted by ({dy}, {dx}) gave a {outs[dy, dx].shape[2:]} output, "
                    f"but a {L_H}x{L_W} dense map needs {expected}: is the net's subsampling factor {factor}?"
                )
    first = outs[0, 0]
    xp = get_array_module(first)
    dense = xp.empty(first.shape[:2] + (L_H, L_W), dtype=first.dtype)
    for (dy, dx), out in outs.items():
        dense[:, :, dy::factor, dx::factor] = out
    return dense


def rarefy(weight: Any, s: int) -> Any:
    """The paper's rarefied filter: taps spread ``s`` apart, zeros between (a dilated kernel written out).

    Shapes: (OC, C, KH, KW) -> (OC, C, (KH - 1)*s + 1, (KW - 1)*s + 1).
    Convolving with it equals convolving with ``weight`` at dilation ``s``.
    """
    xp = get_array_module(weight)
    OC, C, KH, KW = weight.shape
    out = xp.zeros((OC, C, (KH - 1) * s + 1, (KW - 1) * s + 1), dtype=weight.dtype)
    out[:, :, ::s, ::s] = weight
    return out


def output_stride(net: nn.Sequential) -> int:
    """The product of the strides of ``net``'s layers: its subsampling factor f."""
    factor = 1
    for layer in net.children():
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            sh, sw = layer.stride
            if sh != sw:
                raise ValueError(f"output_stride: layer {layer.label()} has unequal strides {(sh, sw)}")
            factor *= sh
    return factor


def dilated_equivalent(net: nn.Sequential) -> nn.Sequential:
    """The stride-1 net whose single pass equals ``shift_and_stitch(net, x, output_stride(net))``.

    Walks the layers with the rate d at which the current feature map is
    sampled (1 at the input). A convolution or pooling layer keeps its kernel,
    gets stride 1 and dilation d (times its own dilation), and multiplies d by
    its old stride for the layers after it. Pointwise layers stay as they are.
    The weights are copied. Only unpadded layers in floor mode can be
    converted: with padding, the net's zeros fall where the shifted input
    still has pixels, and the two would differ along the borders.
    """
    layers: dict[str, nn.Module] = {}
    d = 1
    for name, layer in net.named_children():
        if isinstance(layer, nn.POINTWISE):
            layers[name] = layer
            continue
        if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            raise TypeError(
                f"dilated_equivalent: layer {layer.label()} is a {type(layer).__name__}; only Conv2d, MaxPool2d "
                "and pointwise layers can be converted"
            )
        if layer.padding != (0, 0) or getattr(layer, "ceil_mode", False):
            raise ValueError(
                f"dilated_equivalent: layer {layer.label()} has padding {layer.padding}"
                f"{' and ceil_mode' if getattr(layer, 'ceil_mode', False) else ''}; shift-and-stitch equals the "
                "dilated net only for unpadded layers in floor mode"
            )
        stride = layer.stride
        if stride[0] != stride[1]:
            raise ValueError(f"dilated_equivalent: layer {layer.label()} has unequal strides {stride}")
        dilation = tuple(d * k for k in layer.dilation)
        if isinstance(layer, nn.Conv2d):
            new = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                1,
                0,
                dilation,
                bias=layer.bias is not None,
                dtype=layer.weight.dtype,
            )
            new.weight.data = layer.weight.data.copy()
            if layer.bias is not None:
                new.bias.data = layer.bias.data.copy()
        else:
            new = nn.MaxPool2d(layer.kernel_size, 1, 0, dilation=dilation)
        layers[name] = new
        d *= stride[0]
    return nn.Sequential(layers)


def multiply_adds(net: nn.Sequential, input_shape: tuple[int, int, int, int]) -> int:
    """Multiply-adds of ``net``'s convolutions on an input of ``input_shape`` (N, C, H, W)."""
    N, C, H, W = input_shape
    total = 0
    for layer in net.children():
        if isinstance(layer, nn.Conv2d):
            (KH, KW), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
            H, W = conv_output_size(H, KH, sh, ph, dh), conv_output_size(W, KW, sw, pw, dw)
            total += N * layer.out_channels * H * W * layer.in_channels * KH * KW
        elif isinstance(layer, nn.MaxPool2d):
            k, s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation
            H = pool_output_size(H, k[0], s[0], p[0], d[0], layer.ceil_mode)
            W = pool_output_size(W, k[1], s[1], p[1], d[1], layer.ceil_mode)
    return int(total)


def shift_and_stitch_multiply_adds(net: nn.Sequential, input_shape: tuple[int, int, int, int]) -> int:
    """Multiply-adds of all f^2 shifted passes of ``shift_and_stitch``."""
    N, C, H, W = input_shape
    f = output_stride(net)
    return sum(multiply_adds(net, (N, C, H - dy, W - dx)) for dy in range(f) for dx in range(f))


__all__ = [
    "shift_and_stitch",
    "rarefy",
    "dilated_equivalent",
    "output_stride",
    "multiply_adds",
    "shift_and_stitch_multiply_adds",
]
