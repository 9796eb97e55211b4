"""The convolution's one GPU route: the reference's im2col, product and col2im, as CUDA kernels and cuBLAS.

The im2col and col2im kernels (``cuda/im2col.cu``) read the padding in place
instead of copying the input into a padded array, and col2im gathers (one
thread per input pixel sums the columns that touch it), so it needs no
atomics. The columns are built a band of output rows at a time, at most
``geometry.IM2COL_BUDGET_BYTES`` each, so that VGG16's first layers at
500x500 do not need a gigabyte of columns.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..cuda import kernels
from .geometry import conv_output_size, row_bands

Pair = tuple[int, int]


def _channel_major(a: Any) -> Any:
    """(N, C, R, W) -> (C, N*R*W): the layout of im2col's columns."""
    return a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)


def forward(x: Any, w: Any, b: Any, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """y = w (OC, C*KH*KW) @ im2col(x), band by band, plus b. Shapes: as ``conv.conv2d_reference``."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
    w2 = w.reshape(OC, C * KH * KW)
    y = xp.empty((N, OC, OH, OW), dtype=x.dtype)
    for r0, r1 in row_bands(OH, C * KH * KW * N * OW * x.itemsize):
        cols = kernels.im2col(x, (KH, KW), stride, padding, dilation, (r0, r1), OW)  # (C*KH*KW, N*R*OW)
        band = (w2 @ cols).reshape(OC, N, r1 - r0, OW)
        into = y[:, :, r0:r1].transpose(1, 0, 2, 3)  # (OC, N, R, OW), a view of y
        if b is None:
            into[...] = band
        else:
            xp.add(band, b.reshape(OC, 1, 1, 1), out=into)
    return y


def input_grad(gy: Any, w: Any, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dx = col2im(w^T @ gy), band by band; the col2im kernel adds straight into dx."""
    xp = get_array_module(gy)
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = w.shape
    w2t = w.reshape(OC, C * KH * KW).T
    gx = xp.zeros((N, C) + tuple(input_hw), dtype=gy.dtype)
    for r0, r1 in row_bands(OH, C * KH * KW * N * OW * gy.itemsize):
        gcols = w2t @ _channel_major(gy[:, :, r0:r1])
        kernels.col2im(gcols, gx, (KH, KW), stride, padding, dilation, (r0, r1), OW)
    return gx


def weight_grad(x: Any, gy: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dw = sum over bands of gy's band (OC, N*R*OW) @ its columns^T."""
    N, C = x.shape[:2]
    OC, OH, OW = gy.shape[1:]
    gw = None
    for r0, r1 in row_bands(OH, C * kernel[0] * kernel[1] * N * OW * x.itemsize):
        cols = kernels.im2col(x, kernel, stride, padding, dilation, (r0, r1), OW)
        part = _channel_major(gy[:, :, r0:r1]) @ cols.T  # (OC, C*KH*KW)
        gw = part if gw is None else gw + part
    return gw.reshape(OC, C, *kernel)
