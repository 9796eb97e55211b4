"""Convolution and transposed convolution ("deconvolution"), by im2col and one matrix product.

A convolution computes, for every output pixel, a dot product between the
filter and the input window under it (Sec. 3 of the paper: y_ij = f_ks(...)).
im2col copies every window into one column of a matrix, so that all of those
dot products become one matrix product that BLAS (or cuBLAS) does fast:

    cols = im2col(x)            # (C*KH*KW, N*OH*OW): one column per output pixel
    y    = w.reshape(OC, -1) @ cols   # (OC, N*OH*OW), then viewed as (N, OC, OH, OW)

The backward pass uses the same two pieces the other way round:

    dL/dcols = w^T @ dL/dy  and  dL/dx = col2im(dL/dcols)   -- a transposed convolution
    dL/dw    = dL/dy @ cols^T                                -- im2col of x again

So the input gradient of a convolution IS a transposed convolution with the
same weights, and the input gradient of a transposed convolution is a
convolution. Both ops below are built from the three kernels
``_conv_forward``, ``_conv_backward_input`` and ``_conv_backward_weight``.
(With stride 1, a transposed convolution is itself a convolution with the
kernel flipped, which is how ``_conv_backward_input`` computes it then.)

Memory: the column matrix is KH*KW times the size of the input. For conv1_2 of
an FCN on a 500x500 image (64 channels at 698x698 after pad 100) it is about
1.1 GB. Whenever it would exceed ``IM2COL_BUDGET_BYTES`` it is built and used a
band of output rows at a time (one matrix product per band), always in the
same reused buffer; the backward pass rebuilds it from the saved input
instead of keeping it for every layer.

Speed, on the CPU: the matrix products are BLAS's; what is ours is the copy
into columns. A stride-1 convolution (all of VGG16's 3x3 layers, and their
input gradients) takes its columns from the flattened input as long
contiguous runs (``im2col_flat``), at about twice the speed of the strided
copies of ``im2col``; upsampling layers (kernel 2f, stride f) run as
stride-1 convolutions on blocks of f x f pixels made channels. A layer
with few channels (at most 128 outputs) is computed in tiles of a few
output rows, each unfolded and multiplied while it is in a core's cache,
the tiles spread over the cores (``_tiles``); every other product is split
over the same threads (``threads.matmul``).
benchmarks/RESULTS.md has the profile.

On a GPU (CuPy arrays) im2col and col2im are the CUDA kernels of
``minifcn/cuda/im2col.cu``, which read the padding implicitly instead of
copying the input into a padded one; the matrix products go to cuBLAS.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..cuda import kernels
from . import threads
from .geometry import conv_output_size, conv_transpose_output_size, kernel_span, pad2d, pair
from .reduce import channel_sum

#: Largest im2col buffer built at once; larger ones are processed in bands of output rows. 32 MiB: on
#: VGG16's layers bands of 8 to 1024 MiB ran equally fast, 2 MiB slower (benchmarks/RESULTS.md), and the
#: buffer is part of every pass's memory.
IM2COL_BUDGET_BYTES = 32 * 2**20

#: A stride-1 convolution takes its columns from the flattened input (``im2col_flat``) when that computes
#: at most this fraction more outputs than it keeps.
FLAT_MAX_EXTRA = 1 / 8

#: On the CPU, a convolution with flat columns, at most this many output channels and at least
#: TILE_MIN_BYTES of columns runs in tiles (``_tiles``, below).
TILE_MAX_CHANNELS = 128
TILE_MIN_BYTES = 8 * 2**20
#: The columns of one tile: whole output rows of one image, this many bytes at most (or one row, if larger).
TILE_BYTES = 2 * 2**20

Pair = tuple[int, int]


# ---------------------------------------------------------------------------
# im2col / col2im


def im2col(xpad: Any, kernel: Pair, stride: Pair, dilation: Pair, rows: Pair, OW: int, out: Any = None) -> Any:
    """Unfold the windows of output rows ``rows = (r0, r1)`` into columns.

    Shapes:
        xpad: (N, C, Hp, Wp), the input already padded
        returns: (C*KH*KW, N*R*OW) with R = r1 - r0; the entry at row
        (c, kh, kw) and column (n, i, j) is
        ``xpad[n, c, (r0 + i)*sh + kh*dh, j*sw + kw*dw]``.

    The loop runs over the kernel's taps, never over pixels: for one tap
    (kh, kw), what every output pixel reads is one strided view of the whole
    input (all images, channels and pixels), copied at once. With a stride
    over 1 (the FCNs' upsampling: kernel 2f, stride f) the taps go in blocks
    of sh x sw (``_tap_blocks``): one copy per block, where ``xpad`` reaches
    as far as ``padded_extent`` says.
    ``out``, a flat array of at least that many elements, receives the
    columns instead of a new array (the convolutions reuse one buffer).
    """
    xp = get_array_module(xpad)
    N, C = xpad.shape[:2]
    (KH, KW), (r0, r1) = kernel, rows
    R = r1 - r0
    if KH == KW == 1 and stride == (1, 1) and N == 1 and R == xpad.shape[2] and OW == xpad.shape[3]:
        return xpad.reshape(C, R * OW)  # a 1x1 convolution needs no unfolding: the input is its columns
    shape = (C, KH, KW, N, R, OW)
    cols = xp.empty(shape, dtype=xpad.dtype) if out is None else out[: C * KH * KW * N * R * OW].reshape(shape)
    for taps, tiles in _tap_blocks(xpad, kernel, stride, dilation, rows, OW):
        cols[taps] = tiles  # (C, taps in the block, N, R, OW)
    return cols.reshape(C * KH * KW, N * R * OW)


def _tap_blocks(xpad: Any, kernel: Pair, stride: Pair, dilation: Pair, rows: Pair, OW: int):
    """Yield (index of some taps in the columns (C, KH, KW, ...), the input those taps read, as a view).

    One tap at a time in general: tap (kh, kw) reads
    ``xpad[n, c, (r0 + i)*sh + kh*dh, j*sw + kw*dw]``, a strided view.
    With a stride over 1 and no dilation, the taps go in blocks of sh x sw:
    the taps kh = bh*sh + ph (0 <= ph < sh) of block bh read row
    (r0 + i + bh)*sh + ph, the rows from (r0 + bh)*sh on cut into R groups of
    sh. So a block reads one rectangle of the input, reshaped to
    (N, C, R, sh, OW, sw): 4 blocks instead of 256 taps for a 16x16
    upsampling by 8, 4 instead of 3969 for a 63x63 one by 32. Where the
    kernel is not a whole number of strides, the last block of a row or
    column holds fewer taps, and its rectangle reaches past the kernel by
    less than a stride: ``padded_extent`` pads that far. (On the CPU a
    convolution whose kernel is a whole number of strides, such as FCN-8s's
    upsampling, runs on blocks of pixels instead, ``_by_blocks``; the nets
    bring the others here: the tiny GoogLeNet's 63x63 by 32, AlexNet's conv1.)
    """
    (KH, KW), (sh, sw), (r0, r1) = kernel, stride, rows
    N, C = xpad.shape[:2]
    R = r1 - r0
    if _blocks_fit(xpad.shape[2:], kernel, stride, dilation, (r1, OW)):
        for bh in range(-(-KH // sh)):
            th = min(sh, KH - bh * sh)  # taps of this block, down
            for bw in range(-(-KW // sw)):
                tw = min(sw, KW - bw * sw)
                rect = xpad[:, :, (r0 + bh) * sh : (r1 + bh) * sh, bw * sw : (OW + bw) * sw]
                tiles = rect.reshape(N, C, R, sh, OW, sw)[:, :, :, :th, :, :tw]
                taps = (slice(None), slice(bh * sh, bh * sh + th), slice(bw * sw, bw * sw + tw))
                yield taps, tiles.transpose(1, 3, 5, 0, 2, 4)
        return
    (dh, dw) = dilation
    for kh in range(KH):
        h0 = r0 * sh + kh * dh
        for kw in range(KW):
            w0 = kw * dw
            window = xpad[:, :, h0 : h0 + (R - 1) * sh + 1 : sh, w0 : w0 + (OW - 1) * sw + 1 : sw]
            yield (slice(None), kh, kw), window.transpose(1, 0, 2, 3)  # (C, N, R, OW)


def _blocks_fit(padded_hw: Pair, kernel: Pair, stride: Pair, dilation: Pair, ends: Pair) -> bool:
    """Whether ``_tap_blocks`` can take the taps in blocks: a stride over 1, no dilation, and a padded
    input that holds every block's whole rectangle for output rows up to ``ends[0]`` and ``ends[1]`` columns."""
    if dilation != (1, 1) or stride == (1, 1):
        return False
    return all(p >= (e - 1 + -(-k // s)) * s for p, k, s, e in zip(padded_hw, kernel, stride, ends))


def padded_extent(out: int, k: int, s: int, d: int) -> int:
    """How far along one axis the padded input (or its gradient) must reach for ``out`` outputs.

    The windows reach (out - 1)*s + span; with a stride over 1 and no
    dilation, the tap blocks of ``_tap_blocks`` reach on to a whole number of
    strides, at most s - 1 more (zeros, never part of a window).
    """
    reach = (out - 1) * s + kernel_span(k, d)
    return (out - 1 + -(-k // s)) * s if s > 1 and d == 1 else reach


def im2col_flat(xpad: Any, kernel: Pair, dilation: Pair, rows: Pair, out: Any = None) -> Any:
    """The columns of a stride-1 convolution, each row of them one run of the flattened input.

    Shapes:
        xpad: (N, C, Hp + 1, Wp), the input padded, and one spare row of zeros at the bottom
        returns: (C*KH*KW, N*R*Wp), R = r1 - r0: the columns of output rows ``rows``
        computed as wide as the padded input, Wp columns each instead of OW.

    Flatten each padded image into one line of Hp*Wp values. With stride 1,
    tap (kh, kw) of output pixel (i, j) reads value (i + kh*dh)*Wp + j + kw*dw,
    so along a whole output row, and on into the next, the tap reads
    consecutive values: row (c, kh, kw) of the columns is one contiguous run
    of the input, and all of them together are one strided view of it.
    Copying that view is a handful of long memory copies instead of KH*KW
    strided ones (twice as fast as :func:`im2col` on VGG16's layers). The price:
    the last Wp - OW columns of every output row are windows that wrap around
    the edge into the next row (the spare row keeps the last ones inside the
    array); their products are computed and thrown away, a cost of
    (Wp - OW) / OW more arithmetic, which is why ``_columns_of`` uses this
    form only where that is small. NumPy only: on a GPU the im2col kernel
    reads the padding in place and needs neither.
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


def col2im(cols: Any, gxpad: Any, kernel: Pair, stride: Pair, dilation: Pair, rows: Pair, OW: int) -> None:
    """The adjoint of :func:`im2col`: add each column entry back onto the pixel it came from.

    Shapes:
        cols: (C*KH*KW, N*R*OW), as im2col returns for output rows ``rows``
        gxpad: (N, C, Hp, Wp), accumulated in place

    Within one tap (or one block of taps, see ``_tap_blocks``) the output
    pixels read distinct input pixels, so each step is a plain ``+=`` into a
    view of gxpad.
    """
    N, C = gxpad.shape[:2]
    (KH, KW), (r0, r1) = kernel, rows
    cols = cols.reshape(C, KH, KW, N, r1 - r0, OW)
    for taps, tiles in _tap_blocks(gxpad, kernel, stride, dilation, rows, OW):
        tiles += cols[taps]  # tiles is a view of gxpad: splitting an axis in two never copies


def _row_bands(n_rows: int, bytes_per_row: int) -> list[Pair]:
    """Split output rows into bands whose column matrix fits IM2COL_BUDGET_BYTES."""
    per_band = max(1, IM2COL_BUDGET_BYTES // max(1, bytes_per_row))
    return [(r0, min(r0 + per_band, n_rows)) for r0 in range(0, n_rows, per_band)]


def _workspace(n: int, dtype: Any, use: str = "columns") -> Any:
    """A flat array of ``n`` elements for one band's ``use``, the same memory for every band and layer.

    A new array of hundreds of MiB costs a page fault per 4 KiB the first
    time it is written, about as long as the copy itself; one buffer, grown
    when a layer needs more (at most IM2COL_BUDGET_BYTES but for a single
    row that is larger), is faulted in once. Its contents live until the
    next band: each band's columns are used by one matrix product and dropped.
    Each thread has its own buffers (the tiles below run on several at once).
    """
    dtype = np.dtype(dtype)
    buffers = _WORKSPACE.__dict__
    buffer = buffers.get((use, dtype))
    if buffer is None or buffer.size < n:
        buffer = buffers[(use, dtype)] = np.empty(n, dtype=dtype)
    return buffer[:n]


_WORKSPACE = threading.local()


class _Unfolding(NamedTuple):
    """A convolution's input as columns, band by band.

    ``of(rows)`` is (K, N*R*width) for output rows ``rows`` of every image;
    ``of(rows, n)`` the same for image n alone, (K, R*width).
    """

    of: Callable[..., Any]
    K: int  # rows of the columns: C*KH*KW
    width: int  # columns per output row: OW, or the padded width Wp when ``im2col_flat`` computes more
    flat: bool  # made by ``im2col_flat``


def _columns_of(x: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, out_hw: Pair) -> _Unfolding:
    """How the columns of the convolution of ``x`` are made, a band of output rows at a time.

    On a GPU it is the im2col kernel, padding implicit. On the CPU a stride-1
    convolution whose output rows are much wider than its kernel takes its
    columns as runs of the flattened, padded input (``im2col_flat``), any
    other one from strided views (``im2col``), both into the calling thread's
    workspace. The padded input: for a band of every image, the whole input
    padded once (only as far as the windows reach), on first use; for one
    image's tile (``of(rows, n)``, flat columns), only the rows the tile
    reads, padded in the thread's workspace, while they are in its cache.
    """
    OH, OW = out_hw
    N, C = x.shape[:2]
    K = C * kernel[0] * kernel[1]
    if kernels.on_gpu(x):
        return _Unfolding(lambda rows: kernels.im2col(x, kernel, stride, padding, dilation, rows, OW), K, OW, False)
    Hp = padded_extent(OH, kernel[0], stride[0], dilation[0])
    Wp = padded_extent(OW, kernel[1], stride[1], dilation[1])
    flat = stride == (1, 1) and Wp - OW <= OW * FLAT_MAX_EXTRA
    width = Wp if flat else OW
    whole: list = []  # the padded input, once something asks for it

    def of(rows: Pair, n: int | None = None) -> Any:
        R = rows[1] - rows[0]
        if n is not None and flat:
            slab = _padded_rows(x[n], rows[0], R + kernel_span(kernel[0], dilation[0]), padding, Wp)
            return im2col_flat(slab, kernel, dilation, (0, R), _workspace(K * R * width, x.dtype))
        if not whole:
            whole.append(pad2d(x, padding[0], padding[1], Hp + 1 if flat else Hp, Wp))
        images = whole[0] if n is None else whole[0][n : n + 1]
        out = _workspace(K * images.shape[0] * R * width, x.dtype)
        if flat:
            return im2col_flat(images, kernel, dilation, rows, out)
        return im2col(images, kernel, stride, dilation, rows, OW, out)

    return _Unfolding(of, K, width, flat)


def _padded_rows(image: Any, first: int, count: int, padding: Pair, Wp: int) -> Any:
    """Rows [first, first + count) of one image zero-padded by ``padding`` and cut to Wp columns.

    Shapes: image (C, H, W) -> (1, C, count, Wp), in the calling thread's workspace.
    """
    C, H, _ = image.shape
    top = first - padding[0]  # the image's row at the slab's row 0
    i0, i1 = max(top, 0), max(min(top + count, H), max(top, 0))  # the image's rows inside the slab
    slab = _workspace(C * count * Wp, image.dtype, "padded rows").reshape(1, C, count, Wp)
    return pad2d(image[None, :, i0:i1], i0 - top, padding[1], count, Wp, out=slab)


def _channel_major(a: Any) -> Any:
    """(N, C, R, W) -> (C, N*R*W): the layout of im2col's columns (a view when N == 1)."""
    return a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)


def _product(a: Any, b: Any, out: Any = None) -> Any:
    """The matrix product at the heart of every convolution: cuBLAS on a GPU; on the CPU, BLAS on every core.

    On the CPU it is split over the cores by ``threads.matmul`` (BLAS on one
    thread in each), the same threads the tiles and the pooling use.
    """
    if kernels.on_gpu(a):
        return a @ b if out is None else get_array_module(a).matmul(a, b, out=out)
    return threads.matmul(a, b, out)


# ---------------------------------------------------------------------------
# Strided convolutions as stride-1 ones on blocks of pixels


def _by_blocks(x: Any, kernel: Pair, stride: Pair, dilation: Pair) -> bool:
    """Whether a strided convolution runs as a stride-1 one on its input's blocks of pixels (CPU).

    With stride s and a kernel of m*s taps (no dilation), tap A*s + a of
    output i reads pixel (i + A)*s + a: pixel a of block i + A. Cut the
    padded input into s x s blocks and make each block's pixels channels
    (``_space_to_depth``), and the convolution is a stride-1 convolution
    with an m x m kernel (``_blocked_weight``), which runs on the tiles of
    flat columns; the transposed convolution likewise, its output put back
    into pixels (``_depth_to_space``). The FCNs' upsampling layers (kernel
    2f, stride f) are such: upsampling by 8 at camvid-cpu's 480x360 took
    62-77 ms instead of 130-136, its backward 66-75 instead of 115-128
    (benchmarks/RESULTS.md). Other strided convolutions (AlexNet's conv1,
    11 by 4) take im2col's columns.
    """
    return (
        not kernels.on_gpu(x)
        and stride != (1, 1)
        and dilation == (1, 1)
        and kernel[0] % stride[0] == 0
        and kernel[1] % stride[1] == 0
    )


def _space_to_depth(x: Any, stride: Pair) -> Any:
    """(N, C, H, W) -> (N, C*sh*sw, H/sh, W/sw): pixel (a, b) of each sh x sw block is channel (c, a, b)."""
    N, C, H, W = x.shape
    sh, sw = stride
    blocks = x.reshape(N, C, H // sh, sh, W // sw, sw).transpose(0, 1, 3, 5, 2, 4)
    return blocks.reshape(N, C * sh * sw, H // sh, W // sw)


def _depth_to_space(x: Any, stride: Pair) -> Any:
    """The inverse of ``_space_to_depth``: (N, C*sh*sw, Hb, Wb) -> (N, C, Hb*sh, Wb*sw)."""
    N, CB, Hb, Wb = x.shape
    sh, sw = stride
    pixels = x.reshape(N, CB // (sh * sw), sh, sw, Hb, Wb).transpose(0, 1, 4, 2, 5, 3)
    return pixels.reshape(N, CB // (sh * sw), Hb * sh, Wb * sw)


def _blocked_weight(w: Any, stride: Pair) -> Any:
    """(OC, C, mh*sh, mw*sw) -> (OC, C*sh*sw, mh, mw): w'[o, (c, a, b), A, B] = w[o, c, A*sh + a, B*sw + b]."""
    return np.ascontiguousarray(_space_to_depth(w, stride))


def _padded_to_blocks(x: Any, out_hw: Pair, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    """x zero-padded as far as the windows of ``out_hw`` outputs reach, a whole number of blocks (or cut there)."""
    Hp, Wp = (padded_extent(o, k, s, 1) for o, k, s in zip(out_hw, kernel, stride))
    return pad2d(x, padding[0], padding[1], Hp, Wp)


# ---------------------------------------------------------------------------
# The three kernels


def _in_the_padding(x: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """How many output rows and columns at each edge have windows wholly in the zero padding (CPU, stride 1).

    With stride 1, output row i reads padded rows i .. i + span - 1, and the
    image starts at padded row p: the first p - (span - 1) rows of windows
    (and as many at the bottom) read nothing but zeros, so their output is
    the bias and they add nothing to the weight gradient. conv1_1's pad 100
    (Sec. 4.1, so that small inputs still reach fc6) makes most of its map
    so: on a 128x128 image, 130x130 of its 326x326 outputs see the image.
    The convolution is computed with padding span - 1 and the border filled
    in.
    (The input gradient crops those rows already: see
    ``_transposed_conv_as_conv``.) On a GPU the im2col kernel reads padding
    without copying it, and every window is computed as it is.
    """
    if kernels.on_gpu(x) or stride != (1, 1):
        return (0, 0)
    return (
        max(padding[0] - (kernel_span(kernel[0], dilation[0]) - 1), 0),
        max(padding[1] - (kernel_span(kernel[1], dilation[1]) - 1), 0),
    )


def _conv_forward(x: Any, w: Any, stride: Pair, padding: Pair, dilation: Pair, b: Any = None) -> Any:
    """y = conv(x, w) + b: im2col and one matrix product (per band of output rows).

    Shapes: x (N, C, H, W), w (OC, C, KH, KW), b (OC,) or None -> y (N, OC, OH, OW).

    Each band's product is laid into y, wrap-around columns dropped, with the
    bias added in the same pass.
    """
    xp = get_array_module(x, w)
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
    th, tw = _in_the_padding(x, (KH, KW), stride, padding, dilation)
    if th or tw:  # the windows that see only zeros give b: compute the rest, with padding they reach
        inner = _conv_forward(x, w, stride, (padding[0] - th, padding[1] - tw), dilation, b)
        y = np.empty((N, OC, OH, OW), dtype=x.dtype)
        edge = 0 if b is None else b.reshape(OC, 1, 1)
        for strip in (y[:, :, :th], y[:, :, OH - th :], y[:, :, th : OH - th, :tw], y[:, :, th : OH - th, OW - tw :]):
            strip[...] = edge
        y[:, :, th : OH - th, tw : OW - tw] = inner
        return y
    if _by_blocks(x, (KH, KW), stride, dilation):
        blocks = _space_to_depth(_padded_to_blocks(x, (OH, OW), (KH, KW), stride, padding), stride)
        return _conv_forward(blocks, _blocked_weight(w, stride), (1, 1), (0, 0), (1, 1), b)
    columns = _columns_of(x, (KH, KW), stride, padding, dilation, (OH, OW))
    w2 = w.reshape(OC, C * KH * KW)
    tiles = _tiles(columns, OC, N, OH, x.itemsize)
    if tiles:
        return _forward_by_tiles(columns, tiles, w2, b, (N, OC, OH, OW))
    bias = None if b is None else b.reshape(OC, 1, 1, 1)
    bands = _row_bands(OH, C * KH * KW * N * columns.width * x.itemsize)
    if len(bands) == 1 and columns.width == OW and N == 1:
        y = _product(w2, columns.of((0, OH)))  # (OC, OH*OW): already y's layout
        if bias is not None:
            y += bias.reshape(OC, 1)
        return y.reshape(N, OC, OH, OW)
    y = xp.empty((N, OC, OH, OW), dtype=x.dtype)
    for r0, r1 in bands:
        band = _product(w2, columns.of((r0, r1))).reshape(OC, N, r1 - r0, columns.width)[..., :OW]
        into = y[:, :, r0:r1].transpose(1, 0, 2, 3)  # (OC, N, R, OW), a view of y
        if bias is None:
            into[...] = band
        else:
            xp.add(band, bias, out=into)
    return y


def _conv_backward_input(gy: Any, w: Any, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dL/dx of y = conv(x, w), given gy = dL/dy. This is the transposed convolution of gy with w.

    Shapes: gy (N, OC, OH, OW), w (OC, C, KH, KW) -> dx (N, C, H, W), H, W = input_hw.

    With stride 1 it is computed as a convolution (im2col is cheaper than
    col2im), unless dx is much larger than dy: that convolution's product has
    one column per pixel of dx, col2im's one per pixel of dy, so for fc6 (a 7x7
    kernel without padding, 22x22 -> 16x16 at 500x500) it would do 1.9 times
    the arithmetic. Otherwise, and for strided convolutions: one matrix
    product and col2im.
    """
    _, _, OH, OW = gy.shape
    if stride == (1, 1) and input_hw[0] * input_hw[1] <= 1.25 * OH * OW:
        return _transposed_conv_as_conv(gy, w, padding, dilation)
    if _by_blocks(gy, w.shape[2:], stride, dilation):  # stride 1 on blocks, then the blocks back to pixels
        gxpad = _depth_to_space(_transposed_conv_as_conv(gy, _blocked_weight(w, stride), (0, 0), (1, 1)), stride)
        return np.ascontiguousarray(pad2d(gxpad[:, :, padding[0] :, padding[1] :], 0, 0, *input_hw))
    return _transposed_conv_by_col2im(gy, w, input_hw, stride, padding, dilation)


def _transposed_conv_by_col2im(gy: Any, w: Any, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dcols = w^T @ gy (one matrix product), then col2im adds each column back onto its window."""
    xp = get_array_module(gy, w)
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = w.shape
    H, W = input_hw
    w2t = w.reshape(OC, C * KH * KW).T  # (C*KH*KW, OC), a transposed view: BLAS reads it as is
    bands = _row_bands(OH, C * KH * KW * N * OW * gy.itemsize)
    if kernels.on_gpu(gy):  # the col2im kernel adds straight into dx: no padded buffer
        gx = xp.zeros((N, C, H, W), dtype=gy.dtype)
        for r0, r1 in bands:
            kernels.col2im(
                _product(w2t, _channel_major(gy[:, :, r0:r1])), gx, (KH, KW), stride, padding, dilation, (r0, r1), OW
            )
        return gx
    Hp = max(H + 2 * padding[0], padded_extent(OH, KH, stride[0], dilation[0]))
    Wp = max(W + 2 * padding[1], padded_extent(OW, KW, stride[1], dilation[1]))
    gxpad = xp.zeros((N, C, Hp, Wp), dtype=gy.dtype)
    taps = KH * KW
    for r0, r1 in bands:
        gcols = _product(w2t, _channel_major(gy[:, :, r0:r1]))  # (C*KH*KW, N*R*OW)

        def channels(c0: int, c1: int) -> None:  # each thread adds its channels' columns back
            col2im(gcols[c0 * taps : c1 * taps], gxpad[:, c0:c1], (KH, KW), stride, dilation, (r0, r1), OW)

        threads.by_channels(channels, C, gcols.nbytes)
    if (Hp, Wp) == (H, W):  # no padding to strip
        return gxpad
    return xp.ascontiguousarray(gxpad[:, :, padding[0] : padding[0] + H, padding[1] : padding[1] + W])


def _transposed_conv_as_conv(gy: Any, w: Any, padding: Pair, dilation: Pair) -> Any:
    """A stride-1 transposed convolution is a convolution with the flipped kernel.

    Each input pixel x[i] reaches y[i + p - k*d] through tap k, so dL/dx[i]
    gathers dL/dy over the same taps in reverse order: a convolution of dL/dy
    with the kernel flipped in space and its two channel axes swapped, padded
    by span - 1 - p (or cropped, where that is negative: conv1_1's pad 100).
    """
    xp = get_array_module(gy, w)
    _, _, OH, OW = gy.shape
    _, _, KH, KW = w.shape
    w_flipped = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, OC, KH, KW)
    qh = kernel_span(KH, dilation[0]) - 1 - padding[0]
    qw = kernel_span(KW, dilation[1]) - 1 - padding[1]
    ch, cw = max(-qh, 0), max(-qw, 0)  # a negative padding is a crop
    if ch or cw:
        gy = gy[:, :, ch : OH - ch, cw : OW - cw]
    return _conv_forward(gy, w_flipped, (1, 1), (max(qh, 0), max(qw, 0)), dilation)


def _conv_backward_weight(x: Any, gy: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dL/dw of y = conv(x, w): dL/dy (OC, N*OH*OW) @ im2col(x)^T.

    Shapes: x (N, C, H, W), gy (N, OC, OH, OW) -> dw (OC, C, KH, KW).

    Where the columns are ``im2col_flat``'s, dL/dy is widened with zeros in
    the wrap-around columns, so that those windows add nothing.
    """
    xp = get_array_module(x, gy)
    N, C, H, W = x.shape
    _, OC, OH, OW = gy.shape
    KH, KW = kernel
    th, tw = _in_the_padding(x, kernel, stride, padding, dilation)
    if th or tw:  # the windows that see only zeros add nothing to dw
        inner = gy[:, :, th : OH - th, tw : OW - tw]
        return _conv_backward_weight(x, inner, kernel, stride, (padding[0] - th, padding[1] - tw), dilation)
    if _by_blocks(x, kernel, stride, dilation):
        blocks = _space_to_depth(_padded_to_blocks(x, (OH, OW), kernel, stride, padding), stride)
        m = (KH // stride[0], KW // stride[1])
        gw_blocked = _conv_backward_weight(blocks, gy, m, (1, 1), (0, 0), (1, 1))  # (OC, C*sh*sw, mh, mw)
        return np.ascontiguousarray(_depth_to_space(gw_blocked, stride))
    columns = _columns_of(x, kernel, stride, padding, dilation, (OH, OW))
    tiles = _tiles(columns, OC, N, OH, x.itemsize)
    if tiles:
        return _weight_grad_by_tiles(columns, tiles, gy).reshape(OC, C, KH, KW)
    gw = None
    for r0, r1 in _row_bands(OH, C * KH * KW * N * columns.width * x.itemsize):
        g = gy[:, :, r0:r1]
        if columns.width != OW:
            wide = xp.zeros((OC, N, r1 - r0, columns.width), dtype=gy.dtype)
            wide[..., :OW] = g.transpose(1, 0, 2, 3)
            g = wide.reshape(OC, -1)
        else:
            g = _channel_major(g)
        part = _product(g, columns.of((r0, r1)).T)  # (OC, C*KH*KW)
        gw = part if gw is None else gw + part
    return gw.reshape(OC, C, KH, KW)


# ---------------------------------------------------------------------------
# Tiles: the few-channel layers on the CPU


def _tiles(columns: _Unfolding, OC: int, N: int, OH: int, itemsize: int) -> list[tuple[int, int, int]]:
    """The (image, first row, end row) tiles of a convolution computed tile by tile; empty where it is not.

    A product with few output channels does little arithmetic per byte of
    its columns: made in bands of 32 MiB, the columns go out to memory and
    come back, and that traffic, not the arithmetic, sets the time. In tiles
    of ``TILE_BYTES`` the columns are unfolded and multiplied while they are
    still in the core's cache, and each core takes its own tiles (BLAS on one
    thread per core). Measured on two cores (``benchmarks/bench_tiles.py``,
    benchmarks/RESULTS.md): the tiny nets' layers ran 2.6-3.6x faster at 4
    channels, about 1.3x at 64 and 1.0-1.15x at 128, forward and weight
    gradient; VGG16's first two stages (64 and 128 channels) 10-20% faster;
    256 channels and more, where the products are bound by arithmetic, slower,
    so those keep the bands. Only for flat columns (stride 1), on the CPU.
    """
    if not columns.flat or OC > TILE_MAX_CHANNELS or columns.K * N * OH * columns.width * itemsize < TILE_MIN_BYTES:
        return []
    per_image = -(-OH * columns.K * columns.width * itemsize // TILE_BYTES)  # tiles per image, rounded up
    bounds = [OH * t // per_image for t in range(per_image + 1)]  # rows split evenly: no thin last tile
    return [(n, r0, r1) for n in range(N) for r0, r1 in zip(bounds, bounds[1:]) if r1 > r0]


def _forward_by_tiles(columns: _Unfolding, tiles: list, w2: Any, b: Any, y_shape: tuple) -> Any:
    """y = w2 @ columns + b, tile by tile: each tile's product, wrap-around columns dropped, laid into y."""
    OC, OW = y_shape[1], y_shape[3]
    y = np.empty(y_shape, dtype=w2.dtype)
    bias = None if b is None else b.reshape(OC, 1, 1)

    def run(t0: int, t1: int) -> None:
        for n, r0, r1 in tiles[t0:t1]:
            cols = columns.of((r0, r1), n)  # (K, R*width), in this thread's workspace
            band = np.matmul(w2, cols, out=_workspace(OC * cols.shape[1], w2.dtype, "product").reshape(OC, -1))
            band = band.reshape(OC, r1 - r0, columns.width)[..., :OW]
            if bias is None:
                y[n, :, r0:r1] = band
            else:
                np.add(band, bias, out=y[n, :, r0:r1])

    _on_the_cores(run, len(tiles))
    return y


def _weight_grad_by_tiles(columns: _Unfolding, tiles: list, gy: Any) -> Any:
    """dL/dw (OC, K) = sum over tiles of dL/dy's tile @ its columns^T, each tile's part added in float64.

    dL/dy is widened with zeros in the wrap-around columns, tile by tile. Each
    thread adds its tiles' parts in order, then the threads' sums are added in
    order: the same result every run (the split of the tiles depends on the
    thread count, so runs on different thread counts may differ in the last bit).
    """
    OC, OW = gy.shape[1], gy.shape[3]

    def run(t0: int, t1: int) -> Any:
        total = np.zeros((OC, columns.K))  # float64: a sum over every pixel keeps its digits
        for n, r0, r1 in tiles[t0:t1]:
            cols = columns.of((r0, r1), n)
            wide = _workspace(OC * cols.shape[1], gy.dtype, "gradient").reshape(OC, r1 - r0, columns.width)
            wide[..., :OW] = gy[n, :, r0:r1]
            wide[..., OW:] = 0
            total += wide.reshape(OC, -1) @ cols.T
        return total

    return sum(_on_the_cores(run, len(tiles))).astype(gy.dtype)


def _on_the_cores(run: Callable[[int, int], Any], count: int) -> list:
    """``run(t0, t1)`` over tiles [0, count), split over as many threads as BLAS has, each with BLAS on one thread."""
    parts = threads.blas_threads()
    with threads.single_threaded_blas():
        return threads.by_parts(run, count, parts)


# ---------------------------------------------------------------------------
# Checks shared by both ops


def _check_inputs(op: str, x: Any, w: Any, b: Any, x_channels_axis: int, out_channels_axis: int, w_layout: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D {w_layout}, got shape {w.shape}")
    if x.dtype.kind != "f" or x.dtype != w.dtype:
        raise TypeError(f"{op}: input and weight must share one floating dtype, got {x.dtype} and {w.dtype}")
    if x.shape[1] != w.shape[x_channels_axis]:
        raise ValueError(
            f"{op}: input has {x.shape[1]} channels (shape {x.shape}) but weight of shape {w.shape} "
            f"{w_layout} expects {w.shape[x_channels_axis]}"
        )
    if b is not None:
        OC = w.shape[out_channels_axis]
        if b.shape != (OC,):
            raise ValueError(f"{op}: bias must have shape ({OC},) for weight {w.shape}, got {b.shape}")
        if b.dtype != x.dtype:
            raise TypeError(f"{op}: bias dtype {b.dtype} differs from input dtype {x.dtype}")


def _check_hyper(op: str, stride: Pair, padding: Pair, dilation: Pair) -> None:
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(
            f"{op}: need stride >= 1, dilation >= 1 and padding >= 0, got stride={stride}, "
            f"padding={padding}, dilation={dilation}"
        )


class _Convolution(Function):
    """What both convolutions share: stride, padding and dilation, and the bias gradient."""

    op = "convolution"

    def __init__(self, stride: Any = 1, padding: Any = 0, dilation: Any = 1):
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        _check_hyper(self.op, self.stride, self.padding, self.dilation)

    def _with_bias_grad(self, gx: Any, gw: Any, gy: Any) -> tuple:
        """(dx, dw) and, when there is a bias, db: dy summed over N, OH and OW (in float64, see reduce.py)."""
        return (gx, gw, channel_sum(gy).astype(gy.dtype)) if self.has_bias else (gx, gw)


# ---------------------------------------------------------------------------
# conv2d


class Conv2d(_Convolution):
    """2-D convolution (cross-correlation, as in every framework).

    Shapes:
        x: (N, C, H, W); w: (OC, C, KH, KW); b: (OC,)
        y: (N, OC, OH, OW), OH = conv_output_size(H, KH, sh, ph, dh)

    Backward: dx is the transposed convolution of dy with w; dw is
    dy @ im2col(x)^T; db sums dy over N, OH and OW.
    """

    op = "conv2d"

    def forward(self, x: Any, w: Any, b: Any = None) -> Any:
        _check_inputs("conv2d", x, w, b, 1, 0, "(OC, C, KH, KW)")
        _, _, H, W = x.shape
        for size, k, p, d, axis in (
            (H, w.shape[2], self.padding[0], self.dilation[0], "height"),
            (W, w.shape[3], self.padding[1], self.dilation[1], "width"),
        ):
            if kernel_span(k, d) > size + 2 * p:
                raise ValueError(
                    f"conv2d: kernel {w.shape[2]}x{w.shape[3]} (dilation {self.dilation}) spans "
                    f"{kernel_span(k, d)} pixels in {axis}, more than the padded input: "
                    f"input {H}x{W} with padding {self.padding}"
                )
        y = _conv_forward(x, w, self.stride, self.padding, self.dilation, b)
        self.x, self.w, self.has_bias = x, w, b is not None
        return y

    def backward(self, gy: Any) -> tuple:
        geometry = (self.stride, self.padding, self.dilation)
        gx = gw = None
        if self.needs_input_grad[0]:
            gx = _conv_backward_input(gy, self.w, self.x.shape[2:], *geometry)
        if self.needs_input_grad[1]:
            gw = _conv_backward_weight(self.x, gy, self.w.shape[2:], *geometry)
        return self._with_bias_grad(gx, gw, gy)


def conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1
) -> Tensor:
    """2-D convolution. ``weight`` (OC, C, KH, KW); stride, padding, dilation: an int or an (H, W) pair."""
    f = Conv2d(stride, padding, dilation)
    return f(x, weight) if bias is None else f(x, weight, bias)


# ---------------------------------------------------------------------------
# conv_transpose2d


class ConvTranspose2d(_Convolution):
    """2-D transposed convolution, the paper's "deconvolution" (Sec. 3.3).

    Each input pixel scatters a copy of the filter, scaled by its value,
    into the output at stride ``s``; overlaps add up. It is exactly the input
    gradient of ``conv2d`` with the same weight, stride, padding and dilation,
    and that is how it is computed.

    Shapes:
        x: (N, C, H, W); w: (C, OC, KH, KW); b: (OC,)
        y: (N, OC, OH, OW), OH = (H - 1) * s - 2 * p + dilation * (KH - 1) + 1

    Backward: dx is conv2d(dy, w); dw is the weight gradient of that
    convolution with dy as its input and x as its output gradient.
    """

    op = "conv_transpose2d"

    def forward(self, x: Any, w: Any, b: Any = None) -> Any:
        _check_inputs("conv_transpose2d", x, w, b, 0, 1, "(C, OC, KH, KW)")
        _, _, H, W = x.shape
        out_hw = (
            conv_transpose_output_size(H, w.shape[2], self.stride[0], self.padding[0], self.dilation[0]),
            conv_transpose_output_size(W, w.shape[3], self.stride[1], self.padding[1], self.dilation[1]),
        )
        if min(out_hw) < 1:
            raise ValueError(
                f"conv_transpose2d: output would be {out_hw[0]}x{out_hw[1]} for input {H}x{W}, "
                f"kernel {w.shape[2]}x{w.shape[3]}, stride {self.stride}, padding {self.padding}"
            )
        y = _conv_backward_input(x, w, out_hw, self.stride, self.padding, self.dilation)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        self.x, self.w, self.has_bias = x, w, b is not None
        return y

    def backward(self, gy: Any) -> tuple:
        geometry = (self.stride, self.padding, self.dilation)
        gx = gw = None
        if self.needs_input_grad[0]:
            gx = _conv_forward(gy, self.w, *geometry)
        if self.needs_input_grad[1]:
            gw = _conv_backward_weight(gy, self.x, self.w.shape[2:], *geometry)
        return self._with_bias_grad(gx, gw, gy)


def conv_transpose2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1
) -> Tensor:
    """Transposed convolution. ``weight`` (C, OC, KH, KW); out = (H - 1) * stride - 2 * padding + KH."""
    f = ConvTranspose2d(stride, padding, dilation)
    return f(x, weight) if bias is None else f(x, weight, bias)
