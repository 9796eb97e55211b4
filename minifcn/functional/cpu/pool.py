"""Fast CPU routes of max pooling: blocks that stay in a core's cache, over the cores.

Forward (``forward``): rather than one pass over the whole batch per tap,
the taps are taken on blocks of about ``BLOCK_BYTES`` of input (a few
channels, or a band of rows of one channel), so that a block's rows, their
maxima and the comparisons that find each window's winner stay in a core's
cache from one step to the next; the blocks are shared out over the cores.
The maximum is taken rows first (``separable_max``) and the winner found
without a comparison chain (``first_maximum``).

Backward (``backward``): the same blocks; where windows do not overlap
each input pixel is written once (``select_into``) instead of added. Where
the windows tile the padded input exactly (``windows_tile``: the FCNs' 2x2
pools in ceil mode), every pixel is written, so the gradient needs no zeros
first. Figures: docs/performance.md, "Max pooling".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..geometry import kernel_span, window_views
from . import threads

#: A block reads about this many bytes of input, chosen by measurement (docs/performance.md, "Max pooling").
BLOCK_BYTES = 2**20


def _blocks(planes: int, OH: int, row_bytes: int, split_rows: bool = True) -> list[tuple[int, int, int, int]]:
    """(p0, p1, r0, r1) blocks covering planes [0, planes) and output rows [0, OH), about BLOCK_BYTES each.

    A plane is one channel of one image; ``row_bytes`` is what one output row
    reads of the padded input. Small planes are grouped, large ones cut into
    bands of output rows, unless ``split_rows`` is False (backward with
    overlapping windows, where two bands would add into the same input rows).
    """
    if not split_rows or OH * row_bytes <= BLOCK_BYTES:
        step = max(1, BLOCK_BYTES // (OH * row_bytes))
        return [(p, min(p + step, planes), 0, OH) for p in range(0, planes, step)]
    rows = max(1, BLOCK_BYTES // row_bytes)
    return [(p, p + 1, r, min(r + rows, OH)) for p in range(planes) for r in range(0, OH, rows)]


def _in_blocks(job: Any, blocks: list, nbytes: int) -> None:
    """``job(p0, p1, r0, r1)`` for every block, the blocks shared out over the cores (one where nbytes is small)."""

    def run(b0: int, b1: int) -> None:
        for block in blocks[b0:b1]:
            job(*block)

    threads.by_channels(run, len(blocks), nbytes)


def separable_max(xpad: Any, out_hw: tuple, kernel: tuple, stride: tuple, dilation: tuple, out: Any) -> None:
    """Each window's maximum, rows first, into ``out``: (N, C, Hp, Wp) -> (N, C, OH, OW).

    The maximum over a KH x KW rectangle is the maximum, over its KW columns,
    of each column's maximum over KH rows: KH + KW - 2 elementwise maxima
    instead of KH*KW - 1, and the larger pass streams whole rows. A NaN
    anywhere in a window still wins.
    """
    (OH, OW), (KH, KW), (sh, sw), (dh, dw) = out_hw, kernel, stride, dilation
    rows = [xpad[:, :, kh * dh : kh * dh + (OH - 1) * sh + 1 : sh, :] for kh in range(KH)]
    by_rows = rows[0].copy() if KH == 1 else np.maximum(rows[0], rows[1])
    for r in rows[2:]:
        np.maximum(by_rows, r, out=by_rows)
    cols = [by_rows[..., kw * dw : kw * dw + (OW - 1) * sw + 1 : sw] for kw in range(KW)]
    if KW == 1:
        np.copyto(out, cols[0])
    else:
        np.maximum(cols[0], cols[1], out=out)
    for c in cols[2:]:
        np.maximum(out, c, out=out)


def first_maximum(views: list, y: Any, argmax: Any) -> None:
    """Into ``argmax``, for each window, the first tap k whose value is the window's maximum ``y``
    (the last NaN, if any), as the reference's comparisons find it.

    With miss_k = 1 where view k is not the maximum and 0 where it is, the
    first tap that holds the maximum is the number of misses before the first hit:

        k = miss_0 * (1 + miss_1 * (1 + ... * (1 + miss_{K-2})))

    computed from the inside out in small integers.
    """
    argmax[...] = 0
    for view in views[-2::-1]:
        argmax += 1
        argmax *= (view != y).view(np.uint8)  # miss_k: the booleans read as bytes, 0 or 1
    if np.isnan(y).any():  # NaN equals nothing: its gradient goes to the window's last NaN
        for k, v in enumerate(views):
            np.copyto(argmax, k, where=np.isnan(v))


def forward(xpad: Any, out_hw: tuple, kernel: tuple, stride: tuple, dilation: tuple, argmax: Any) -> Any:
    """y (N, C, OH, OW) from the (-inf) padded input, block by block; the winners into ``argmax`` unless None."""
    N, C, Hp, Wp = xpad.shape
    OH, OW = out_hw
    y = np.empty((N, C, OH, OW), dtype=xpad.dtype)
    # One plane per channel of each image, as (1, N*C, rows, columns) views: a block is a few planes.
    planes, y_planes = xpad.reshape(1, N * C, Hp, Wp), y.reshape(1, N * C, OH, OW)
    won = None if argmax is None else argmax.reshape(1, N * C, OH, OW)
    span = kernel_span(kernel[0], dilation[0])

    def block(p0: int, p1: int, r0: int, r1: int) -> None:  # output rows [r0, r1) of planes [p0, p1)
        part = planes[:, p0:p1, r0 * stride[0] : (r1 - 1) * stride[0] + span]  # the input rows they read
        out = y_planes[:, p0:p1, r0:r1]
        separable_max(part, (r1 - r0, OW), kernel, stride, dilation, out=out)
        if won is not None:
            views = [part[view] for _, view in window_views((r1 - r0, OW), kernel, stride, dilation)]
            first_maximum(views, out, won[:, p0:p1, r0:r1])

    _in_blocks(block, _blocks(N * C, OH, stride[0] * Wp * xpad.itemsize), xpad.nbytes)
    return y


def windows_tile(kernel: tuple, stride: tuple, dilation: tuple, out_hw: tuple, padded_hw: tuple) -> bool:
    """Whether the windows cover the padded input exactly once, pixel by pixel (kernel = stride, no dilation,
    and the padded input a whole number of windows)."""
    return kernel == stride and dilation == (1, 1) and padded_hw == (out_hw[0] * stride[0], out_hw[1] * stride[1])


def select_into(out: Any, g: Any, mask: Any) -> None:
    """out = g where mask, +0.0 elsewhere, bit by bit: the mask's booleans made whole words of ones or zeros
    (0 - 1 wraps to all ones) and a bitwise and, one pass straight into ``out`` (a strided view)."""
    bits = np.dtype(f"u{g.itemsize}")
    np.bitwise_and(g.view(bits), np.negative(mask.view(np.uint8), dtype=bits), out=out.view(bits))


def backward(
    gy: Any, argmax: Any, padded_shape: tuple, kernel: tuple, stride: tuple, dilation: tuple, tiled: bool
) -> Any:
    """dL/dxpad: each output's gradient routed to its window's winner, block by block.

    Starts from zeros, unless ``tiled`` (``windows_tile`` holds: every pixel is written).
    """
    N, C, Hp, Wp = padded_shape
    OH, OW = gy.shape[2:]
    overlap = any(k * d > s for k, d, s in zip(kernel, dilation, stride))
    gxpad = (np.empty if tiled else np.zeros)(padded_shape, dtype=gy.dtype)
    zero = gy.dtype.type(0)
    span = kernel_span(kernel[0], dilation[0])
    gx_planes, gy, argmax = (a.reshape(1, N * C, *a.shape[2:]) for a in (gxpad, gy, argmax))

    def block(p0: int, p1: int, r0: int, r1: int) -> None:
        gx = gx_planes[:, p0:p1, r0 * stride[0] : (r1 - 1) * stride[0] + span]
        g, won = gy[:, p0:p1, r0:r1], argmax[:, p0:p1, r0:r1]
        for k, view in window_views((r1 - r0, OW), kernel, stride, dilation):
            if overlap:
                gx[view] += np.where(won == k, g, zero)
            else:  # each input pixel is in one window at most: write, do not add
                select_into(gx[view], g, won == k)

    blocks = _blocks(N * C, OH, stride[0] * Wp * gy.itemsize, split_rows=not overlap)
    _in_blocks(block, blocks, gxpad.nbytes)
    return gxpad
