"""Fast CPU route: a few-channel convolution in tiles that stay in a core's cache, the tiles over the cores.

A product with few output channels does little arithmetic per byte of its
columns: made in bands of 32 MiB, the columns go out to memory and come
back, and that traffic, not the arithmetic, sets the time. In tiles of
``TILE_BYTES`` (whole output rows of one image) the flat columns are made
and multiplied while they are still in the core's cache, and each core
takes its own tiles, BLAS on one thread in each. Taken where the flat
columns are (stride 1), for at most ``TILE_MAX_CHANNELS`` output channels
and at least ``TILE_MIN_BYTES`` of columns: with more channels the products
are bound by arithmetic and the bands are faster. Figures:
docs/performance.md, "Tiles".

Each tile runs on a thread of a split pass, so it calls ``numpy.matmul``
itself, never ``threads.matmul`` (see threads.py: a part may not split again).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..geometry import conv_output_size, kernel_span, pad2d
from . import flat, threads, workspace

Pair = tuple[int, int]

#: At most this many output channels...
TILE_MAX_CHANNELS = 128
#: ...and at least this many bytes of columns in all.
TILE_MIN_BYTES = 8 * 2**20
#: The columns of one tile: whole output rows of one image, this many bytes at most (or one row, if larger).
TILE_BYTES = 2 * 2**20


def applies(x_shape: tuple, w_shape: tuple, stride: Pair, padding: Pair, dilation: Pair, itemsize: int) -> bool:
    """The flat columns' condition, at most TILE_MAX_CHANNELS outputs and at least TILE_MIN_BYTES of columns."""
    N, C, H, W = x_shape
    OC, _, KH, KW = w_shape
    OH = conv_output_size(H, KH, 1, padding[0], dilation[0])
    columns_bytes = C * KH * KW * N * OH * (W + 2 * padding[1]) * itemsize
    return (
        flat.applies(x_shape, w_shape, stride, padding, dilation)
        and OC <= TILE_MAX_CHANNELS
        and (columns_bytes >= TILE_MIN_BYTES)
    )


def _tiles(N: int, OH: int, row_bytes: int) -> list[tuple[int, int, int]]:
    """(image, first row, end row) of every tile: rows split evenly, at most TILE_BYTES each (or one row)."""
    per_image = -(-OH * row_bytes // TILE_BYTES)  # tiles per image, rounded up
    bounds = [OH * t // per_image for t in range(per_image + 1)]
    return [(n, r0, r1) for n in range(N) for r0, r1 in zip(bounds, bounds[1:]) if r1 > r0]


def _tile_columns(x: Any, n: int, rows: Pair, kernel: Pair, padding: Pair, dilation: Pair) -> Any:
    """The flat columns of output rows ``rows`` of image n, (C*KH*KW, R*Wp), from only the rows they read,
    padded in this thread's workspace."""
    C, H, W = x.shape[1:]
    R, Wp = rows[1] - rows[0], W + 2 * padding[1]
    count = R + kernel_span(kernel[0], dilation[0])  # the rows read, and a spare one
    top = rows[0] - padding[0]  # the image's row at the slab's row 0
    i0, i1 = max(top, 0), max(min(top + count, H), max(top, 0))  # the image's rows inside the slab
    slab = workspace.get(C * count * Wp, x.dtype, "padded rows").reshape(1, C, count, Wp)
    pad2d(x[n : n + 1, :, i0:i1], i0 - top, padding[1], count, Wp, out=slab)
    K = C * kernel[0] * kernel[1]
    return flat.im2col_flat(slab, kernel, dilation, (0, R), workspace.get(K * R * Wp, x.dtype))


def _on_the_cores(run: Callable[[int, int], Any], count: int) -> list:
    """``run(t0, t1)`` over tiles [0, count), split over as many threads as BLAS has, each with BLAS on one."""
    parts = threads.blas_threads()  # asked before the block, inside which BLAS's own count reads 1
    with threads.single_threaded_blas():
        return threads.by_parts(run, count, parts)


def forward(x: Any, w: Any, b: Any, padding: Pair, dilation: Pair) -> Any:
    """y = w @ columns + b, tile by tile: each tile's product, wrap-around columns dropped, laid into y."""
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    OH = conv_output_size(H, KH, 1, padding[0], dilation[0])
    OW, Wp = conv_output_size(W, KW, 1, padding[1], dilation[1]), W + 2 * padding[1]
    w2 = w.reshape(OC, C * KH * KW)
    tiles = _tiles(N, OH, C * KH * KW * Wp * x.itemsize)
    y = np.empty((N, OC, OH, OW), dtype=x.dtype)
    bias = None if b is None else b.reshape(OC, 1, 1)

    def run(t0: int, t1: int) -> None:
        for n, r0, r1 in tiles[t0:t1]:
            cols = _tile_columns(x, n, (r0, r1), (KH, KW), padding, dilation)  # (K, R*Wp)
            band = np.matmul(w2, cols, out=workspace.get(OC * cols.shape[1], x.dtype, "product").reshape(OC, -1))
            band = band.reshape(OC, r1 - r0, Wp)[..., :OW]
            if bias is None:
                y[n, :, r0:r1] = band
            else:
                np.add(band, bias, out=y[n, :, r0:r1])

    _on_the_cores(run, len(tiles))
    return y


def weight_grad(x: Any, gy: Any, kernel: Pair, padding: Pair, dilation: Pair) -> Any:
    """dL/dw (OC, K) = sum over tiles of dL/dy's tile @ its columns^T, each tile's part added in float64.

    dL/dy is widened with zeros in the wrap-around columns, tile by tile.
    Each thread adds its tiles' parts in order, then the threads' sums are
    added in order: the same result every run on the same thread count.
    """
    N, C, H, W = x.shape
    OC, OH, OW = gy.shape[1:]
    Wp, K = W + 2 * padding[1], C * kernel[0] * kernel[1]
    tiles = _tiles(N, OH, K * Wp * x.itemsize)

    def run(t0: int, t1: int) -> Any:
        total = np.zeros((OC, K))  # float64: a sum over every pixel keeps its digits
        for n, r0, r1 in tiles[t0:t1]:
            cols = _tile_columns(x, n, (r0, r1), kernel, padding, dilation)
            wide = workspace.get(OC * cols.shape[1], gy.dtype, "gradient").reshape(OC, r1 - r0, Wp)
            wide[..., :OW] = gy[n, :, r0:r1]
            wide[..., OW:] = 0
            total += wide.reshape(OC, -1) @ cols.T
        return total

    return sum(_on_the_cores(run, len(tiles))).astype(gy.dtype).reshape(OC, C, *kernel)
