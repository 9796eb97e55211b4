"""Max and average pooling over 2-D windows.

Both loop over the KH*KW taps of a window, never over pixels: for one tap
(kh, kw), the pixel that every window reads is a strided view of the padded
input (``geometry.window_views``), so each step is one vectorised operation
on the whole batch. That is the reference, and where a reader starts:
``max_pool2d_reference`` and its backward just below. Max pooling on the
CPU then takes its fast route (``cpu/pool.py``), and on a GPU (CuPy arrays)
both ops run as the CUDA kernels of ``minifcn/cuda/pool.cu``: one thread
per output in the forward pass, one per input pixel (gathering, no atomics)
in the backward pass.

The FCNs pool 2x2 with stride 2 in ceil mode (Caffe's default), so an input of
any size keeps its last row and column; see ``pool_output_size``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..cuda import kernels
from . import routes
from .cpu import pool as cpu_pool
from .geometry import kernel_span, pad2d, pair, pool_output_size, window_views

# ---------------------------------------------------------------------------
# The reference


def max_pool2d_reference(xpad: Any, out_hw: tuple, kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    """(y, argmax): each window's maximum, and which tap k = kh*KW + kw held it.

    Shapes: xpad (N, C, Hp, Wp), padded with -inf -> y, argmax (N, C, OH, OW).

    The taps are compared in order and a later one wins only if it is
    larger, so a tie goes to the first maximum (as in Caffe and PyTorch). A
    NaN wins over anything and a later NaN over an earlier one, so a NaN in
    a window is its output and the last NaN takes the gradient, as in the
    CUDA kernel.
    """
    xp = get_array_module(xpad)
    y = argmax = None
    for k, index in window_views(out_hw, kernel, stride, dilation):
        tap = xpad[index]  # (N, C, OH, OW): tap k of every window
        if y is None:
            y, argmax = tap.copy(), xp.zeros(tap.shape, dtype=np.min_scalar_type(kernel[0] * kernel[1] - 1))
            continue
        wins = (tap > y) | xp.isnan(tap)
        y[wins], argmax[wins] = tap[wins], k
    return y, argmax


def max_pool2d_backward_reference(
    gy: Any, argmax: Any, padded_shape: tuple, kernel: tuple, stride: tuple, dilation: tuple
) -> Any:
    """dL/dxpad: each output's gradient added to the pixel that won its window."""
    xp = get_array_module(gy)
    gxpad = xp.zeros(padded_shape, dtype=gy.dtype)
    for k, index in window_views(gy.shape[2:], kernel, stride, dilation):
        gxpad[index] += xp.where(argmax == k, gy, 0)
    return gxpad


# ---------------------------------------------------------------------------
# The dispatchers

MAX_FORWARD = routes.declare("max_pool2d", "gpu", "reference", "blocks")
MAX_BACKWARD = routes.declare("max_pool2d backward", "gpu", "reference", "tiled windows", "blocks")
AVG = routes.declare("avg_pool2d", "gpu", "reference")  # one route per device: no fast CPU route


def _max_forward(
    x: Any, xpad_hw: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple, out_hw: tuple, argmax: bool
) -> tuple:
    """(y, argmax or None) by the first route that holds.

    | route     | when                    | what it does                                                |
    |-----------|-------------------------|-------------------------------------------------------------|
    | gpu       | CuPy arrays             | one thread per output (cuda/pool.cu)                        |
    | reference | ``minifcn.reference()`` | ``max_pool2d_reference``                                    |
    | blocks    | any other CPU input     | cache-sized blocks over the cores, rows first (cpu/pool.py) |
    """
    if kernels.on_gpu(x):
        routes.took(MAX_FORWARD, "gpu")
        return kernels.max_pool_forward(x, kernel, stride, padding, dilation, out_hw)
    xpad = pad2d(x, padding[0], padding[1], *xpad_hw, value=-np.inf)
    if routes.use_reference():
        routes.took(MAX_FORWARD, "reference")
        return max_pool2d_reference(xpad, out_hw, kernel, stride, dilation)
    routes.took(MAX_FORWARD, "blocks")
    won = np.empty(x.shape[:2] + tuple(out_hw), dtype=np.min_scalar_type(kernel[0] * kernel[1] - 1)) if argmax else None
    return cpu_pool.forward(xpad, out_hw, kernel, stride, dilation, won), won


def _max_backward(
    gy: Any, argmax: Any, x_shape: tuple, xpad_hw: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> Any:
    """dL/dx by the first route that holds.

    | route         | when                                      | what it does                                |
    |---------------|-------------------------------------------|---------------------------------------------|
    | gpu           | CuPy arrays                               | one thread per input pixel, gathering       |
    | reference     | ``minifcn.reference()``                   | ``max_pool2d_backward_reference``           |
    | tiled windows | the windows tile the padded input exactly | blocks, every pixel written: no zeros first |
    | blocks        | any other CPU input                       | blocks over the cores, from zeros           |
    """
    if kernels.on_gpu(gy):
        routes.took(MAX_BACKWARD, "gpu")
        return kernels.max_pool_backward(gy, argmax, x_shape, kernel, stride, padding, dilation)
    padded_shape = tuple(x_shape[:2]) + tuple(xpad_hw)
    if routes.use_reference():
        routes.took(MAX_BACKWARD, "reference")
        gxpad = max_pool2d_backward_reference(gy, argmax, padded_shape, kernel, stride, dilation)
    else:
        tiled = cpu_pool.windows_tile(kernel, stride, dilation, gy.shape[2:], tuple(xpad_hw))
        routes.took(MAX_BACKWARD, "tiled windows" if tiled else "blocks")
        gxpad = cpu_pool.backward(gy, argmax, padded_shape, kernel, stride, dilation, tiled)
    return _unpad(gxpad, padding, x_shape[2:])


# ---------------------------------------------------------------------------
# The ops


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
        self.geometry = (kernel, stride, padding, dilation)
        needs_argmax = self.input_needs_grad(0)  # only backward reads which tap won
        y, self.argmax = _max_forward(x, pad_hw, kernel, stride, padding, dilation, out_hw, needs_argmax)
        return y

    def backward(self, gy: Any) -> Any:
        return _max_backward(gy, self.argmax, self.x_shape, self.pad_hw, *self.geometry)


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
            routes.took(AVG, "gpu")
            return kernels.avg_pool_forward(x, kernel, stride, padding, out_hw)
        routes.took(AVG, "reference")
        xpad = pad2d(x, padding[0], padding[1], *pad_hw)
        # Window extent inside the padded input, per output row and column.
        rows = xp.minimum(kernel[0], H + 2 * padding[0] - xp.arange(out_hw[0]) * stride[0])
        cols = xp.minimum(kernel[1], W + 2 * padding[1] - xp.arange(out_hw[1]) * stride[1])
        self.inv_count = (1.0 / (rows[:, None] * cols[None, :])).astype(x.dtype)  # (OH, OW)
        y = None
        for _, view in window_views(out_hw, kernel, stride, dilation):
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
        for _, view in window_views(out_hw, kernel, stride, dilation):
            gxpad[view] += g
        return _unpad(gxpad, padding, (H, W))


def avg_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False) -> Tensor:
    """Average pooling with padding counted in the divisor. ``stride`` defaults to ``kernel_size``."""
    return AvgPool2d(kernel_size, stride, padding, ceil_mode)(x)
