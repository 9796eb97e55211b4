"""Fast CPU route: a strided convolution whose kernel is (about) a whole number of strides, on blocks of pixels.

With stride s and a kernel of m*s taps (no dilation), tap A*s + a of output
i reads pixel (i + A)*s + a: pixel a of block i + A. Cut the padded input
into s x s blocks and make each block's pixels channels (``space_to_depth``),
and the convolution is a stride-1 convolution with an m x m kernel
(``blocked_weight``), which takes the fast stride-1 routes (tiles of flat
columns) instead of im2col's strided copies; the transposed convolution
likewise, its output put back into pixels (``depth_to_space``). The FCNs'
upsampling layers (kernel 2f, stride f) are such. A kernel a little short
of a whole number of strides (the 63x63 upsampling by 32 of the AlexNet and
GoogLeNet FCNs) gets zero taps appended at its bottom and right, which add
nothing; where that would add more than ``MAX_EXTRA_TAPS`` of arithmetic
(AlexNet's conv1, 11 by 4: 19%) the route is not taken. Figures:
docs/performance.md, "Upsampling on blocks".
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..geometry import conv_output_size, pad2d
from . import flipped

Pair = tuple[int, int]


#: At most this fraction of zero taps is appended to a kernel to make it a whole number of strides.
MAX_EXTRA_TAPS = 1 / 8


def _whole(kernel: Pair, stride: Pair) -> Pair:
    """The kernel's size rounded up to a whole number of strides."""
    return tuple(-(-k // s) * s for k, s in zip(kernel, stride))


def applies(w_shape: tuple, stride: Pair, dilation: Pair) -> bool:
    """A stride over 1, no dilation, and a kernel that is a whole number of strides or becomes one with at most
    MAX_EXTRA_TAPS more taps."""
    KH, KW = w_shape[2:]
    PH, PW = _whole((KH, KW), stride)
    return stride != (1, 1) and dilation == (1, 1) and PH * PW <= (1 + MAX_EXTRA_TAPS) * KH * KW


def _whole_weight(w: Any, stride: Pair) -> Any:
    """w (.., .., KH, KW) with zero taps appended at the bottom and right up to a whole number of strides."""
    return pad2d(w, 0, 0, *_whole(w.shape[2:], stride))


def space_to_depth(x: Any, stride: Pair) -> Any:
    """(N, C, H, W) -> (N, C*sh*sw, H/sh, W/sw): pixel (a, b) of each sh x sw block is channel (c, a, b)."""
    N, C, H, W = x.shape
    sh, sw = stride
    blocks = x.reshape(N, C, H // sh, sh, W // sw, sw).transpose(0, 1, 3, 5, 2, 4)
    return blocks.reshape(N, C * sh * sw, H // sh, W // sw)


def depth_to_space(x: Any, stride: Pair) -> Any:
    """The inverse of ``space_to_depth``: (N, C*sh*sw, Hb, Wb) -> (N, C, Hb*sh, Wb*sw)."""
    N, CB, Hb, Wb = x.shape
    sh, sw = stride
    pixels = x.reshape(N, CB // (sh * sw), sh, sw, Hb, Wb).transpose(0, 1, 4, 2, 5, 3)
    return pixels.reshape(N, CB // (sh * sw), Hb * sh, Wb * sw)


def blocked_weight(w: Any, stride: Pair) -> Any:
    """(OC, C, mh*sh, mw*sw) -> (OC, C*sh*sw, mh, mw): w'[o, (c, a, b), A, B] = w[o, c, A*sh + a, B*sw + b]."""
    return np.ascontiguousarray(space_to_depth(w, stride))


def _blocks_of(x: Any, out_hw: Pair, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    """x zero-padded as far as the windows of ``out_hw`` outputs reach (a whole number of blocks), as blocks."""
    Hp, Wp = ((o - 1 + k // s) * s for o, k, s in zip(out_hw, kernel, stride))
    return space_to_depth(pad2d(x, padding[0], padding[1], Hp, Wp), stride)


def _out_hw(x: Any, kernel: Pair, stride: Pair, padding: Pair) -> Pair:
    return tuple(conv_output_size(n, k, s, p) for n, k, s, p in zip(x.shape[2:], kernel, stride, padding))


def forward(conv: Callable, x: Any, w: Any, b: Any, stride: Pair, padding: Pair) -> Any:
    """y = conv(x, w) + b as ``conv`` of x's blocks with the blocked weight, stride 1, no padding."""
    out_hw = _out_hw(x, w.shape[2:], stride, padding)  # the kernel's own, before any taps are appended
    w = _whole_weight(w, stride)
    blocks = _blocks_of(x, out_hw, w.shape[2:], stride, padding)
    return conv(blocks, blocked_weight(w, stride), b, (1, 1), (0, 0), (1, 1))


def input_grad(conv: Callable, gy: Any, w: Any, input_hw: Pair, stride: Pair, padding: Pair) -> Any:
    """dL/dx: the blocked convolution's input gradient (a flipped-kernel ``conv``), its blocks put back into
    pixels, the padding cut off (or zeros added where the windows stop short of the input's end)."""
    gx_blocks = flipped.input_grad(conv, gy, blocked_weight(_whole_weight(w, stride), stride), (0, 0), (1, 1))
    gxpad = depth_to_space(gx_blocks, stride)
    return np.ascontiguousarray(pad2d(gxpad[:, :, padding[0] :, padding[1] :], 0, 0, *input_hw))


def weight_grad(weight_grad: Callable, x: Any, gy: Any, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    """dL/dw: ``weight_grad`` of the blocked convolution, its kernel put back into pixels (the appended taps,
    if any, cut off)."""
    whole = _whole(kernel, stride)
    blocks = _blocks_of(x, gy.shape[2:], whole, stride, padding)
    m = (whole[0] // stride[0], whole[1] // stride[1])
    gw_blocked = weight_grad(blocks, gy, m, (1, 1), (0, 0), (1, 1))  # (OC, C*sh*sw, mh, mw)
    return np.ascontiguousarray(depth_to_space(gw_blocked, stride)[:, :, : kernel[0], : kernel[1]])
