"""Fast CPU route: a stride-1 convolution's columns as runs of the flattened input.

Flatten each padded image into one line of Hp*Wp values. With stride 1, tap
(kh, kw) of output pixel (i, j) reads value (i + kh*dh)*Wp + j + kw*dw, so
along a whole output row, and on into the next, the tap reads consecutive
values: row (c, kh, kw) of the columns is one contiguous run of the input,
and all of them together are one strided view of it. Copying that view is a
handful of long memory copies instead of KH*KW strided ones. The price: the
last Wp - OW columns of every output row are windows that wrap around the
edge into the next row (a spare row of zeros keeps the last ones inside the
array); their products are computed and thrown away, (Wp - OW) / OW more
arithmetic, so the route is taken only where that is at most ``FLAT_MAX_EXTRA``.

The columns are built a band of output rows at a time (at most
``geometry.IM2COL_BUDGET_BYTES``) into one reused buffer, and each product is
split over the cores (``threads.matmul``). Figures: docs/performance.md,
"Columns as runs of the flattened input".
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..geometry import conv_output_size, kernel_span, pad2d, row_bands
from . import threads, workspace

Pair = tuple[int, int]

#: The route is taken when the wrap-around columns add at most this fraction to the columns.
FLAT_MAX_EXTRA = 1 / 8


def applies(x_shape: tuple, w_shape: tuple, stride: Pair, padding: Pair, dilation: Pair) -> bool:
    """Stride 1, and the wrap-around columns (span - 1 per row) at most FLAT_MAX_EXTRA of the output's width."""
    OW = conv_output_size(x_shape[3], w_shape[3], 1, padding[1], dilation[1])
    return stride == (1, 1) and kernel_span(w_shape[3], dilation[1]) - 1 <= OW * FLAT_MAX_EXTRA


def im2col_flat(xpad: Any, kernel: Pair, dilation: Pair, rows: Pair, out: Any = None) -> Any:
    """The columns of output rows ``rows`` of a stride-1 convolution, each row of them one run of the input.

    Shapes:
        xpad: (N, C, Hp + 1, Wp), the input padded, and one spare row of zeros at the bottom
        returns: (C*KH*KW, N*R*Wp), R = r1 - r0: Wp columns per output row instead of OW,
        the first OW of them im2col's.

    ``out``, a flat array of at least that many elements, receives the columns.
    """
    N, C, Hq, Wp = xpad.shape
    (KH, KW), (dh, dw), (r0, r1) = kernel, dilation, rows
    L = (r1 - r0) * Wp  # output pixels per image in this band, wrap-around columns included
    flat = xpad.reshape(N, C, Hq * Wp)[:, :, r0 * Wp :]
    sN, sC, s1 = flat.strides
    windows = as_strided(flat, (C, KH, KW, N, L), (sC, dh * Wp * s1, dw * s1, sN, s1), writeable=False)
    size = C * KH * KW * N * L
    cols = np.empty(windows.shape, dtype=xpad.dtype) if out is None else out[:size].reshape(windows.shape)
    cols[...] = windows
    return cols.reshape(C * KH * KW, N * L)


def _padded(x: Any, padding: Pair) -> Any:
    """x zero-padded, with a spare row of zeros: (N, C, H + 2ph + 1, W + 2pw)."""
    H, W = x.shape[2:]
    return pad2d(x, padding[0], padding[1], H + 2 * padding[0] + 1, W + 2 * padding[1])


def forward(x: Any, w: Any, b: Any, padding: Pair, dilation: Pair) -> Any:
    """y = w @ flat columns + b, band by band, the wrap-around columns dropped as each band is laid into y."""
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    OH = conv_output_size(H, KH, 1, padding[0], dilation[0])
    OW = conv_output_size(W, KW, 1, padding[1], dilation[1])
    xpad = _padded(x, padding)
    Wp, K = xpad.shape[3], C * KH * KW
    w2 = w.reshape(OC, K)
    bands = row_bands(OH, K * N * Wp * x.itemsize)
    if len(bands) == 1 and N == 1 and Wp == OW:  # a 1x1 convolution of one image: the product is y's layout
        y = threads.matmul(w2, im2col_flat(xpad, (KH, KW), dilation, (0, OH), workspace.get(K * OH * Wp, x.dtype)))
        if b is not None:
            y += b.reshape(OC, 1)
        return y.reshape(N, OC, OH, OW)
    y = np.empty((N, OC, OH, OW), dtype=x.dtype)
    for r0, r1 in bands:
        cols = im2col_flat(xpad, (KH, KW), dilation, (r0, r1), workspace.get(K * N * (r1 - r0) * Wp, x.dtype))
        band = threads.matmul(w2, cols).reshape(OC, N, r1 - r0, Wp)[..., :OW]
        into = y[:, :, r0:r1].transpose(1, 0, 2, 3)  # (OC, N, R, OW), a view of y
        if b is None:
            into[...] = band
        else:
            np.add(band, b.reshape(OC, 1, 1, 1), out=into)
    return y


def weight_grad(x: Any, gy: Any, kernel: Pair, padding: Pair, dilation: Pair) -> Any:
    """dL/dw = dL/dy @ flat columns^T, band by band, dL/dy widened with zeros in the wrap-around columns."""
    N, C = x.shape[:2]
    OC, OH, OW = gy.shape[1:]
    xpad = _padded(x, padding)
    Wp, K = xpad.shape[3], C * kernel[0] * kernel[1]
    gw = None
    for r0, r1 in row_bands(OH, K * N * Wp * x.itemsize):
        cols = im2col_flat(xpad, kernel, dilation, (r0, r1), workspace.get(K * N * (r1 - r0) * Wp, x.dtype))
        g = gy[:, :, r0:r1].transpose(1, 0, 2, 3)  # (OC, N, R, OW)
        if Wp != OW:
            g = np.zeros((OC, N, r1 - r0, Wp), dtype=gy.dtype)
            g[..., :OW] = gy[:, :, r0:r1].transpose(1, 0, 2, 3)
        part = threads.matmul(g.reshape(OC, -1), cols.T)  # (OC, C*KH*KW)
        gw = part if gw is None else gw + part
    return gw.reshape(OC, C, *kernel)
