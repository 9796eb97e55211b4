"""Fast CPU route: a stride-1 transposed convolution as a convolution with the kernel flipped.

Each input pixel x[i] reaches y[i + p - k*d] through tap k, so dL/dx[i]
gathers dL/dy over the same taps in reverse order: a convolution of dL/dy
with the kernel flipped in space and its two channel axes swapped, padded
by span - 1 - p (or cropped, where that is negative: conv1_1's pad 100).
im2col's copies are cheaper than col2im's additions, and the convolution
takes the fast forward routes. Unless dx is much larger than dy: that
convolution's product has one column per pixel of dx, col2im's one per pixel
of dy, so for fc6 (a 7x7 kernel without padding, 22x22 -> 16x16 at 500x500)
it would do 1.9 times the arithmetic; ``MAX_GROWTH`` draws the line.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..geometry import kernel_span

Pair = tuple[int, int]

#: The route is taken where dx has at most this many times dy's pixels.
MAX_GROWTH = 1.25


def applies(gy_hw: Pair, input_hw: Pair, stride: Pair) -> bool:
    """Stride 1, and dx at most MAX_GROWTH times dy's pixels."""
    return stride == (1, 1) and input_hw[0] * input_hw[1] <= MAX_GROWTH * gy_hw[0] * gy_hw[1]


def input_grad(conv: Callable, gy: Any, w: Any, padding: Pair, dilation: Pair) -> Any:
    """dL/dx of y = conv(x, w, stride 1) as ``conv(dL/dy, w flipped)``. Shapes: gy (N, OC, OH, OW) -> (N, C, H, W)."""
    _, _, OH, OW = gy.shape
    _, _, KH, KW = w.shape
    w_flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, OC, KH, KW)
    qh = kernel_span(KH, dilation[0]) - 1 - padding[0]
    qw = kernel_span(KW, dilation[1]) - 1 - padding[1]
    ch, cw = max(-qh, 0), max(-qw, 0)  # a negative padding is a crop
    if ch or cw:
        gy = gy[:, :, ch : OH - ch, cw : OW - cw]
    return conv(gy, w_flipped, None, (1, 1), (max(qh, 0), max(qw, 0)), dilation)
