"""Fast CPU route: a convolution's windows that lie wholly in the zero padding are not computed.

With stride 1, output row i reads padded rows i .. i + span - 1, and the
image starts at padded row p: the first p - (span - 1) rows of windows (and
as many at the bottom) read nothing but zeros, so their output is the bias
and they add nothing to the weight gradient. conv1_1's pad 100 (Sec. 4.1, so
that small inputs still reach fc6) makes most of its map so: on a 128x128
image, 130x130 of its 326x326 outputs see the image. Figures:
docs/performance.md, "Windows in the padding".
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..geometry import kernel_span

Pair = tuple[int, int]


def border(kernel: Pair, padding: Pair, dilation: Pair) -> Pair:
    """How many output rows and columns at each edge see only padding (stride 1)."""
    return (
        max(padding[0] - (kernel_span(kernel[0], dilation[0]) - 1), 0),
        max(padding[1] - (kernel_span(kernel[1], dilation[1]) - 1), 0),
    )


def applies(w_shape: tuple, stride: Pair, padding: Pair, dilation: Pair) -> bool:
    """Stride 1 and at least one row or column of windows wholly in the padding."""
    return stride == (1, 1) and border(w_shape[2:], padding, dilation) != (0, 0)


def forward(conv: Callable, x: Any, w: Any, b: Any, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """The windows that see the image by ``conv`` (with the padding they reach); the border is the bias."""
    N, OC = x.shape[0], w.shape[0]
    th, tw = border(w.shape[2:], padding, dilation)
    inner = conv(x, w, b, stride, (padding[0] - th, padding[1] - tw), dilation)
    OH, OW = inner.shape[2] + 2 * th, inner.shape[3] + 2 * tw
    y = np.empty((N, OC, OH, OW), dtype=x.dtype)
    edge = 0 if b is None else b.reshape(OC, 1, 1)
    for strip in (y[:, :, :th], y[:, :, OH - th :], y[:, :, th : OH - th, :tw], y[:, :, th : OH - th, OW - tw :]):
        strip[...] = edge
    y[:, :, th : OH - th, tw : OW - tw] = inner
    return y


def weight_grad(
    weight_grad: Callable, x: Any, gy: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> Any:
    """dL/dw by ``weight_grad`` over the windows that see the image alone."""
    OH, OW = gy.shape[2:]
    th, tw = border(kernel, padding, dilation)
    inner = gy[:, :, th : OH - th, tw : OW - tw]
    return weight_grad(x, inner, kernel, stride, (padding[0] - th, padding[1] - tw), dilation)
