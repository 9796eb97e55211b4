"""Fast CPU route: the reference's im2col and col2im, its matrix products split over the cores.

What is left of the convolutions once the other routes have taken theirs
(fc6's 7x7 on a small map, strided kernels that are not a whole number of
strides, stride-1 layers on maps too narrow for the flat columns) is the
reference itself, but for two things: its products go to ``threads.matmul``
(BLAS on one thread in each of our threads) instead of ``@``, and col2im's
channels are split over the same threads. A product of
more than ``MIN_MULTIPLY_ADDS`` multiply-adds would wake BLAS's own
threads, and after it they spin for a while and take the cores from the
passes that follow (the tiles, the pooling). Figures: docs/performance.md,
"Products on our threads".
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..geometry import conv_output_size
from . import threads

Pair = tuple[int, int]

#: The route is taken for products of more multiply-adds than this: those OpenBLAS would run on its own threads.
MIN_MULTIPLY_ADDS = threads.OWN_THREAD_PRODUCT


def applies(x_shape: tuple, w_shape: tuple, stride: Pair, padding: Pair, dilation: Pair) -> bool:
    """The product has more multiply-adds than BLAS runs on the calling thread by itself."""
    N, C, H, W = x_shape
    OC, _, KH, KW = w_shape
    OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
    return OC * C * KH * KW * N * OH * OW > MIN_MULTIPLY_ADDS


def forward(im2col: Callable, x: Any, w: Any, b: Any, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """``conv2d_reference`` with the product on our threads."""
    N = x.shape[0]
    OC, C, KH, KW = w.shape
    cols = im2col(x, (KH, KW), stride, padding, dilation)  # (C*KH*KW, N*OH*OW)
    y = threads.matmul(w.reshape(OC, C * KH * KW), cols)
    if b is not None:
        y += b.reshape(OC, 1)
    OH = conv_output_size(x.shape[2], KH, stride[0], padding[0], dilation[0])
    return np.ascontiguousarray(y.reshape(OC, N, OH, -1).transpose(1, 0, 2, 3))


def input_grad(col2im: Callable, gy: Any, w: Any, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """``conv2d_input_grad_reference`` with the product on our threads, and col2im split by channels over them."""
    N, OC = gy.shape[:2]
    _, C, KH, KW = w.shape
    gcols = threads.matmul(w.reshape(OC, C * KH * KW).T, gy.transpose(1, 0, 2, 3).reshape(OC, -1))
    gx = np.empty((N, C) + tuple(input_hw), dtype=gy.dtype)
    taps = KH * KW

    def channels(c0: int, c1: int) -> None:  # rows (c, kh, kw) of channels [c0, c1) add onto those channels alone
        part = col2im(gcols[c0 * taps : c1 * taps], (N, c1 - c0) + tuple(input_hw), (KH, KW), stride, padding, dilation)
        gx[:, c0:c1] = part

    threads.by_channels(channels, C, gcols.nbytes)
    return gx


def weight_grad(im2col: Callable, x: Any, gy: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """``conv2d_weight_grad_reference`` with the product on our threads."""
    OC, C = gy.shape[1], x.shape[1]
    cols = im2col(x, kernel, stride, padding, dilation)
    return threads.matmul(gy.transpose(1, 0, 2, 3).reshape(OC, -1), cols.T).reshape(OC, C, *kernel)
