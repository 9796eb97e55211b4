"""Max and average pooling over 2-D windows.

Both loop over the KH*KW offsets inside a window, never over pixels: for one
offset (kh, kw), the pixel that every output reads is a strided view of the
padded input, so each step is one vectorised operation on the whole batch.

On the CPU, max pooling takes those steps on blocks of about ``BLOCK_BYTES``
of its input (a few channels, or a band of rows of one channel) rather than
on the whole batch at once: a block's rows, their maxima, the comparisons
that find each window's winner and, backward, the gradient routed to it stay
in a core's cache from one step to the next, and the blocks are shared out
over the cores.

On a GPU (CuPy arrays) both run as the CUDA kernels of ``minifcn/cuda/pool.cu``
instead: one thread per output in the forward pass, one per input pixel
(gathering, no atomics) in the backward pass.

The FCNs pool 2x2 with stride 2 in ceil mode (Caffe's default), so an input of
any size keeps its last row and column; see ``pool_output_size``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..cuda import kernels
from . import threads
from .geometry import kernel_span, pad2d, pair, pool_output_size

#: Max pooling on the CPU works on blocks reading about this many bytes of input each. Measured on VGG16's
#: pool1 and the tiny nets' pools (benchmarks/RESULTS.md): 0.5 to 2 MiB ran alike, 4 MiB and whole-batch
#: passes up to 2x slower, 64 KiB slower again.
BLOCK_BYTES = 2**20


def _window_views(xpad: Any, out_hw: tuple, kernel: tuple, stride: tuple, dilation: tuple):
    """Yield (k, view) for each kernel offset k = kh*KW + kw:

    view[n, c, i, j] = xpad[n, c, i*sh + kh*dh, j*sw + kw*dw].
    """
    (OH, OW), (KH, KW), (sh, sw), (dh, dw) = out_hw, kernel, stride, dilation
    for kh in range(KH):
        for kw in range(KW):
            h0, w0 = kh * dh, kw * dw
            yield (
                kh * KW + kw,
                (
                    slice(None),
                    slice(None),
                    slice(h0, h0 + (OH - 1) * sh + 1, sh),
                    slice(w0, w0 + (OW - 1) * sw + 1, sw),
                ),
            )


def _pool_geometry(op: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool):
    """Validate the arguments; return kernel, stride, padding, dilation pairs, the output size and the padded size."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point, got {x.dtype}")
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding, dilation = pair(padding, "padding"), pair(dilation, "dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(
            f"{op}: need kernel_size, stride, dilation >= 1 and padding >= 0, got kernel_size={kernel}, "
            f"stride={stride}, padding={padding}, dilation={dilation}"
        )
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding {padding} must be at most half the kernel {kernel} (as in PyTorch), "
            "or a window could see only padding"
        )
    _, _, H, W = x.shape
    OH = pool_output_size(H, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    OW = pool_output_size(W, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    for size, k, p, d, out, axis in (
        (H, kernel[0], padding[0], dilation[0], OH, "height"),
        (W, kernel[1], padding[1], dilation[1], OW, "width"),
    ):
        # Floor mode needs one whole window inside the padded input. Ceil mode, as in
        # Caffe and PyTorch, also takes a window that hangs over the end.
        if out < 1 or (not ceil_mode and kernel_span(k, d) > size + 2 * p):
            raise ValueError(
                f"{op}: kernel {kernel[0]}x{kernel[1]} (dilation {dilation}) spans {kernel_span(k, d)} pixels in "
                f"{axis}, more than the padded input: input {H}x{W} with padding {padding}"
                + ("" if ceil_mode else " (ceil_mode=True would keep one clipped window)")
            )
    # In ceil mode the last window may hang over the bottom/right padding: pad that far.
    Hp = max(H + 2 * padding[0], (OH - 1) * stride[0] + kernel_span(kernel[0], dilation[0]))
    Wp = max(W + 2 * padding[1], (OW - 1) * stride[1] + kernel_span(kernel[1], dilation[1]))
    return kernel, stride, padding, dilation, (OH, OW), (Hp, Wp)


def _check_windows_see_input(hw: tuple, out_hw: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple):
    """Max pooling needs at least one input pixel under every window; padding alone gives -inf.

    Possible only with dilation, whose taps can straddle a small input.
    """
    for axis, name in ((0, "height"), (1, "width")):
        taps = (
            np.arange(out_hw[axis])[:, None] * stride[axis] - padding[axis] + np.arange(kernel[axis]) * dilation[axis]
        )
        inside = ((taps >= 0) & (taps < hw[axis])).any(axis=1)
        if not inside.all():
            i = int(np.argmin(inside))
            raise ValueError(
                f"max_pool2d: along {name}, window {i} (taps at {taps[i].tolist()}) sees only padding "
                f"of an input of size {hw[axis]}, with kernel {kernel}, dilation {dilation}, padding {padding}"
            )


def _unpad(gxpad: Any, padding: tuple, hw: tuple) -> Any:
    xp = get_array_module(gxpad)
    (ph, pw), (H, W) = padding, hw
    if gxpad.shape[2:] == (H, W):
        return gxpad
    return xp.ascontiguousarray(gxpad[:, :, ph : ph + H, pw : pw + W])


def _blocks(planes: int, OH: int, row_bytes: int, split_rows: bool = True) -> list[tuple[int, int, int, int]]:
    """(p0, p1, r0, r1) blocks covering planes [0, planes) and output rows [0, OH), about BLOCK_BYTES of input each.

    A plane is one channel of one image; ``row_bytes`` is what one output
    row reads of the padded input. Small planes are grouped, large ones cut
    into bands of output rows, unless ``split_rows`` is False (backward with
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

    threads.by_channels(run, len(blocks), nbytes)  # memory-bound: both cores


def _separable_max(xpad: Any, out_hw: tuple, kernel: tuple, stride: tuple, dilation: tuple, out: Any) -> None:
    """Each window's maximum, rows first, into ``out``: (N, C, Hp, Wp) -> (N, C, OH, OW).

    The maximum over a KH x KW rectangle is the maximum, over its KW columns,
    of each column's maximum over KH rows. So the taps of a column are
    reduced first, for whole rows at once (views that read contiguous rows),
    then the KW columns of that half-size result: KH + KW - 2 elementwise
    maxima instead of KH*KW - 1, and for the FCNs' 2x2 pools the larger pass
    streams whole rows. A NaN anywhere in a window still wins.
    """
    xp = get_array_module(xpad)
    (OH, OW), (KH, KW), (sh, sw), (dh, dw) = out_hw, kernel, stride, dilation
    rows = [xpad[:, :, kh * dh : kh * dh + (OH - 1) * sh + 1 : sh, :] for kh in range(KH)]
    by_rows = rows[0].copy() if KH == 1 else xp.maximum(rows[0], rows[1])
    for r in rows[2:]:
        xp.maximum(by_rows, r, out=by_rows)
    cols = [by_rows[..., kw * dw : kw * dw + (OW - 1) * sw + 1 : sw] for kw in range(KW)]
    if KW == 1:
        xp.copyto(out, cols[0])
    else:
        xp.maximum(cols[0], cols[1], out=out)
    for c in cols[2:]:
        xp.maximum(out, c, out=out)


def _first_maximum(views: list, y: Any, argmax: Any = None) -> Any:
    """For each window, the first offset k whose value is the window's maximum ``y`` (the last NaN, if any).

    Caffe and PyTorch route the gradient of a tie to the first maximum. With
    miss_k = 1 where view k is not the maximum and 0 where it is, the first
    offset that holds the maximum is the number of misses before the first hit:

        k = miss_0 * (1 + miss_1 * (1 + ... * (1 + miss_{K-2})))

    computed from the inside out in small integers (a window none of whose
    offsets hits holds a NaN; it gets K-1, then the last NaN below). Written
    into ``argmax`` when given.
    """
    xp = get_array_module(y)
    if argmax is None:
        argmax = xp.empty(y.shape, dtype=np.min_scalar_type(len(views) - 1))
    argmax[...] = 0
    for view in views[-2::-1]:
        argmax += 1
        argmax *= (view != y).view(np.uint8)  # miss_k: the booleans read as bytes, 0 or 1
    if xp.isnan(y).any():  # NaN equals nothing: send its gradient to the window's last NaN, as the CUDA kernel
        for k, v in enumerate(views):
            xp.copyto(argmax, k, where=xp.isnan(v))
    return argmax


class MaxPool2d(Function):
    """Max pooling; padding is -inf, so it never wins.

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW), OH = pool_output_size(...).

    Forward keeps, for each output, which of the KH*KW window offsets held the
    maximum (the first one on ties, as Caffe and PyTorch); a NaN anywhere in a
    window propagates to the output. Backward routes each output gradient to
    that one input pixel, adding where windows overlap.
    """

    def __init__(
        self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
    ):
        self.args = (kernel_size, stride, padding, dilation, bool(ceil_mode))

    def forward(self, x: Any) -> Any:
        kernel, stride, padding, dilation, out_hw, pad_hw = _pool_geometry("max_pool2d", x, *self.args)
        _check_windows_see_input(x.shape[2:], out_hw, kernel, stride, padding, dilation)
        self.x_shape, self.pad_hw = x.shape, pad_hw
        self.geometry = (kernel, stride, padding, dilation, out_hw)
        if kernels.on_gpu(x):
            y, self.argmax = kernels.max_pool_forward(x, kernel, stride, padding, dilation, out_hw)
            return y
        xpad = pad2d(x, padding[0], padding[1], *pad_hw, value=-np.inf)
        N, C, Hp, Wp = xpad.shape
        OH, OW = out_hw
        y = np.empty((N, C, OH, OW), dtype=x.dtype)
        needs_argmax = self.input_needs_grad(0)  # only backward reads which offset won
        if needs_argmax:
            self.argmax = np.empty(y.shape, dtype=np.min_scalar_type(kernel[0] * kernel[1] - 1))
        # One plane per channel of each image, as (1, N*C, rows, columns) views: a block is a few planes.
        planes, y_planes = xpad.reshape(1, N * C, Hp, Wp), y.reshape(1, N * C, OH, OW)
        span = kernel_span(kernel[0], dilation[0])

        def block(p0: int, p1: int, r0: int, r1: int) -> None:  # output rows [r0, r1) of planes [p0, p1)
            part = planes[:, p0:p1, r0 * stride[0] : (r1 - 1) * stride[0] + span]  # the input rows they read
            out = y_planes[:, p0:p1, r0:r1]
            _separable_max(part, (r1 - r0, OW), kernel, stride, dilation, out=out)
            if needs_argmax:
                views = [part[view] for _, view in _window_views(part, (r1 - r0, OW), kernel, stride, dilation)]
                _first_maximum(views, out, self.argmax.reshape(1, N * C, OH, OW)[:, p0:p1, r0:r1])

        _in_blocks(block, _blocks(N * C, OH, stride[0] * Wp * x.itemsize), xpad.nbytes)
        return y

    def backward(self, gy: Any) -> Any:
        xp = get_array_module(gy)
        kernel, stride, padding, dilation, out_hw = self.geometry
        if kernels.on_gpu(gy):
            return kernels.max_pool_backward(gy, self.argmax, self.x_shape, kernel, stride, padding, dilation)
        N, C, H, W = self.x_shape
        (OH, OW), (Hp, Wp) = out_hw, self.pad_hw
        windows_overlap = any(k_ * d > s for k_, d, s in zip(kernel, dilation, stride))
        gxpad = (xp.empty if _windows_tile(kernel, stride, dilation, out_hw, (Hp, Wp)) else xp.zeros)(
            (N, C, Hp, Wp), dtype=gy.dtype
        )
        zero = gy.dtype.type(0)
        span = kernel_span(kernel[0], dilation[0])
        gx_planes, gy, argmax = (a.reshape(1, N * C, *a.shape[2:]) for a in (gxpad, gy, self.argmax))

        def block(p0: int, p1: int, r0: int, r1: int) -> None:
            gx = gx_planes[:, p0:p1, r0 * stride[0] : (r1 - 1) * stride[0] + span]
            g, won = gy[:, p0:p1, r0:r1], argmax[:, p0:p1, r0:r1]
            for k, view in _window_views(gx, (r1 - r0, OW), kernel, stride, dilation):
                if windows_overlap:
                    gx[view] += xp.where(won == k, g, zero)
                else:  # each input pixel is in one window at most (the FCNs' 2x2 stride 2): write, do not add
                    _select_into(gx[view], g, won == k)

        blocks = _blocks(N * C, OH, stride[0] * Wp * gy.itemsize, split_rows=not windows_overlap)
        _in_blocks(block, blocks, gxpad.nbytes)
        return _unpad(gxpad, padding, (H, W))


def _windows_tile(kernel: tuple, stride: tuple, dilation: tuple, out_hw: tuple, padded_hw: tuple) -> bool:
    """Whether the windows cover the padded input exactly once, pixel by pixel (the FCNs' 2x2 pools, stride 2).

    Then backward writes every pixel of the input gradient (the winner's
    gradient or zero) and it needs no zeros first.
    """
    return kernel == stride and dilation == (1, 1) and padded_hw == (out_hw[0] * stride[0], out_hw[1] * stride[1])


def _select_into(out: Any, g: Any, mask: Any) -> None:
    """out = g where mask, +0.0 elsewhere, bit by bit.

    The mask's booleans become whole words of ones or zeros (0 - 1 wraps to
    all ones), and a bitwise and keeps g's bits or none: the same values as
    ``where(mask, g, 0)``, an inf or a NaN in g included, in one pass that
    writes straight into ``out`` (a strided view).
    """
    bits = np.dtype(f"u{g.itemsize}")
    np.bitwise_and(g.view(bits), np.negative(mask.view(np.uint8), dtype=bits), out=out.view(bits))


def max_pool2d(
    x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> Tensor:
    """Max pooling. ``stride`` defaults to ``kernel_size``; ``ceil_mode`` as Caffe and PyTorch."""
    return MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode)(x)


class AvgPool2d(Function):
    """Average pooling; zero padding counts in the divisor (Caffe's AVE pooling).

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW).

    The divisor of a window is the part of it inside the padded input,
    KH*KW except for a last ceil-mode window hanging over the edge, whose
    overhang is left out (as Caffe and PyTorch with count_include_pad).
    Backward spreads each output gradient evenly over its window.
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False):
        self.args = (kernel_size, stride, padding, 1, bool(ceil_mode))

    def forward(self, x: Any) -> Any:
        xp = get_array_module(x)
        kernel, stride, padding, dilation, out_hw, pad_hw = _pool_geometry("avg_pool2d", x, *self.args)
        _, _, H, W = x.shape
        self.x_shape, self.pad_hw = x.shape, pad_hw
        self.geometry = (kernel, stride, padding, dilation, out_hw)
        if kernels.on_gpu(x):
            return kernels.avg_pool_forward(x, kernel, stride, padding, out_hw)
        xpad = pad2d(x, padding[0], padding[1], *pad_hw)
        # Window extent inside the padded input, per output row and column.
        rows = xp.minimum(kernel[0], H + 2 * padding[0] - xp.arange(out_hw[0]) * stride[0])
        cols = xp.minimum(kernel[1], W + 2 * padding[1] - xp.arange(out_hw[1]) * stride[1])
        self.inv_count = (1.0 / (rows[:, None] * cols[None, :])).astype(x.dtype)  # (OH, OW)
        y = None
        for _, view in _window_views(xpad, out_hw, kernel, stride, dilation):
            y = xpad[view].copy() if y is None else y + xpad[view]
        y *= self.inv_count
        return y

    def backward(self, gy: Any) -> Any:
        xp = get_array_module(gy)
        kernel, stride, padding, dilation, out_hw = self.geometry
        if kernels.on_gpu(gy):
            return kernels.avg_pool_backward(gy, self.x_shape, kernel, stride, padding)
        N, C, H, W = self.x_shape
        g = gy * self.inv_count
        gxpad = xp.zeros((N, C) + self.pad_hw, dtype=gy.dtype)
        for _, view in _window_views(gxpad, out_hw, kernel, stride, dilation):
            gxpad[view] += g
        return _unpad(gxpad, padding, (H, W))


def avg_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False) -> Tensor:
    """Average pooling with padding counted in the divisor. ``stride`` defaults to ``kernel_size``."""
    return AvgPool2d(kernel_size, stride, padding, ceil_mode)(x)
