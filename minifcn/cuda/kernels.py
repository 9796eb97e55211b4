"""The GPU forms of minifcn's layers: each function allocates its output and launches one kernel.

The ops in ``minifcn.functional`` call these when their input is a CuPy array
(``on_gpu``) and their NumPy form otherwise; both compute the same thing, and
tests/test_cuda_*.py check that they do. Shapes and geometry are named as in
the ``.cu`` files (read those for what each thread computes):

    im2col / col2im        the columns of a convolution, a band of output rows at a time
    max_pool_forward/backward, avg_pool_forward/backward
    channel_sums           per-channel sums in double precision (batch norm, bias gradients)
    batch_norm_statistics/forward/backward   batch norm's per-channel and per-element passes
    softmax_loss_forward/backward   per-pixel cross-entropy with an ignore label
    sgd_update, adam_update         the optimisers' step over one flat buffer of parameters

Matrix products are not here: ``xp.matmul`` sends them to cuBLAS.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import device_of, get_array_module
from . import launch as _launch

Pair = tuple[int, int]


def on_gpu(*arrays: Any) -> bool:
    """True when an op's arrays are CuPy arrays, so its CUDA kernels should run."""
    return any(device_of(a) == "cuda" for a in arrays if a is not None)


def _check_shape(kernel: str, name: str, array: Any, expected: tuple) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"CUDA kernel {kernel}: {name} has shape {tuple(array.shape)}, expected {tuple(expected)}")


def _run(kernel: str, dtype: Any, n_threads: int, *args: Any, blocks: int | None = None) -> None:
    # Looked up at call time, so that tests can run the kernels on the host instead.
    _launch.launch(kernel, dtype, n_threads, *args, blocks=blocks)


# ---------------------------------------------------------------------------
# Convolution columns


def im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, rows: Pair, OW: int) -> Any:
    """The columns of output rows ``rows = (r0, r1)``, padding implicit (no padded copy of x).

    Shapes: x (N, C, H, W) -> (C*KH*KW, N*R*OW), R = r1 - r0; entry ((c, kh, kw), (n, i, j))
    is x[n, c, (r0 + i)*sh - ph + kh*dh, j*sw - pw + kw*dw], or 0 in the padding.
    The same layout as ``minifcn.functional.im2col``.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (r0, r1) = kernel, rows
    if (KH, KW, N, r0, r1, OW) == (1, 1, 1, 0, H, W) and stride == (1, 1) and padding == (0, 0):
        return xp.ascontiguousarray(x).reshape(C, H * W)  # a 1x1 convolution: the input is its own columns
    cols = xp.empty((C * KH * KW, N * (r1 - r0) * OW), dtype=x.dtype)
    _run(
        "im2col",
        x.dtype,
        cols.size,
        xp.ascontiguousarray(x),
        cols,
        N,
        C,
        H,
        W,
        KH,
        KW,
        r0,
        r1,
        OW,
        *stride,
        *padding,
        *dilation,
    )
    return cols


def col2im(cols: Any, gx: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, rows: Pair, OW: int) -> None:
    """Add the columns of output rows ``rows`` back onto the pixels they came from, into ``gx`` (N, C, H, W)."""
    N, C, H, W = gx.shape
    (KH, KW), (r0, r1) = kernel, rows
    _check_shape("col2im", "cols", cols, (C * KH * KW, N * (r1 - r0) * OW))
    if not gx.flags.c_contiguous:
        raise ValueError(f"CUDA kernel col2im: gx of shape {gx.shape} must be C-contiguous")
    xp = get_array_module(cols)
    _run(
        "col2im",
        gx.dtype,
        gx.size,
        xp.ascontiguousarray(cols),
        gx,
        N,
        C,
        H,
        W,
        KH,
        KW,
        r0,
        r1,
        OW,
        *stride,
        *padding,
        *dilation,
    )


# ---------------------------------------------------------------------------
# Pooling


def max_pool_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, out_hw: Pair) -> tuple:
    """Max pooling: (y, argmax), argmax (int32) the tap kh*KW + kw that won each window."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    y = xp.empty((N, C) + tuple(out_hw), dtype=x.dtype)
    argmax = xp.empty(y.shape, dtype=np.int32)
    _run(
        "max_pool_forward",
        x.dtype,
        y.size,
        xp.ascontiguousarray(x),
        y,
        argmax,
        N,
        C,
        H,
        W,
        *out_hw,
        *kernel,
        *stride,
        *padding,
        *dilation,
    )
    return y, argmax


def max_pool_backward(
    gy: Any, argmax: Any, x_shape: tuple, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> Any:
    """dL/dx of max pooling: each window's gradient goes to its argmax pixel, gathered per input pixel."""
    xp = get_array_module(gy)
    N, C, H, W = x_shape
    _check_shape("max_pool_backward", "argmax", argmax, gy.shape)
    gx = xp.empty(x_shape, dtype=gy.dtype)
    _run(
        "max_pool_backward",
        gy.dtype,
        gx.size,
        xp.ascontiguousarray(gy),
        argmax,
        gx,
        N,
        C,
        H,
        W,
        *gy.shape[2:],
        *kernel,
        *stride,
        *padding,
        *dilation,
    )
    return gx


def avg_pool_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, out_hw: Pair) -> Any:
    """Average pooling, padding counted in the divisor, a ceil-mode overhang not."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    y = xp.empty((N, C) + tuple(out_hw), dtype=x.dtype)
    _run(
        "avg_pool_forward", x.dtype, y.size, xp.ascontiguousarray(x), y, N, C, H, W, *out_hw, *kernel, *stride, *padding
    )
    return y


def avg_pool_backward(gy: Any, x_shape: tuple, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    """dL/dx of average pooling: each input pixel gathers dy / divisor from the windows that hold it."""
    xp = get_array_module(gy)
    N, C, H, W = x_shape
    gx = xp.empty(x_shape, dtype=gy.dtype)
    _run(
        "avg_pool_backward",
        gy.dtype,
        gx.size,
        xp.ascontiguousarray(gy),
        gx,
        N,
        C,
        H,
        W,
        *gy.shape[2:],
        *kernel,
        *stride,
        *padding,
    )
    return gx


# ---------------------------------------------------------------------------
# Per-channel sums

#: Blocks the per-channel sums aim for: enough to fill a large GPU when a layer has few channels.
SUM_BLOCKS = 512


def channel_sums(a: Any, b: Any) -> Any:
    """(2, C) float64: the sums of a and of a*b over the batch and the pixels, per channel.

    Shapes: a, b (N, C, H, W) (any trailing pixel axes). Each channel is cut
    into S slices, one block each; the kernel writes the (2, C, S) partial
    sums and one CuPy reduction adds the slices.
    """
    xp = get_array_module(a)
    N, C = a.shape[:2]
    _check_shape("channel_sums", "b", b, a.shape)
    P = a.size // max(N * C, 1)
    S = max(1, min(SUM_BLOCKS // max(C, 1), -(-P // _launch.THREADS_PER_BLOCK)))
    partial = xp.zeros((2, C, S), dtype=np.float64)  # zeros: an empty tensor launches nothing, and sums to 0
    _run(
        "channel_sums",
        a.dtype,
        a.size,
        xp.ascontiguousarray(a),
        xp.ascontiguousarray(b),
        partial,
        N,
        C,
        P,
        S,
        blocks=C * S,
    )
    return partial.sum(axis=2)


# ---------------------------------------------------------------------------
# Batch normalisation


def batch_norm_statistics(sums: Any, running_mean: Any, running_var: Any, m: int, momentum: float, eps: float) -> tuple:
    """(mean, inv_std), (C,) each, from the float64 sums (2, C) of x and x*x; the running arrays move in place."""
    xp = get_array_module(running_mean)
    C = running_mean.shape[0]
    _check_shape("batch_norm_statistics", "sums", sums, (2, C))
    _check_shape("batch_norm_statistics", "running_var", running_var, (C,))
    mean, inv_std = xp.empty(C, running_mean.dtype), xp.empty(C, running_mean.dtype)
    _run(
        "batch_norm_statistics",
        running_mean.dtype,
        C,
        xp.ascontiguousarray(sums),
        mean,
        inv_std,
        running_mean,
        running_var,
        C,
        m,
        momentum,
        eps,
    )
    return mean, inv_std


def batch_norm_forward(x: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any) -> tuple:
    """(xhat, y), both (N, C, H, W): xhat = (x - mean) * inv_std, y = gamma * xhat + beta, in one pass."""
    xp = get_array_module(x)
    N, C = x.shape[:2]
    for name, a in (("mean", mean), ("inv_std", inv_std), ("gamma", gamma), ("beta", beta)):
        _check_shape("batch_norm_forward", name, a, (C,))
    xhat, y = xp.empty(x.shape, x.dtype), xp.empty(x.shape, x.dtype)
    _run(
        "batch_norm_forward",
        x.dtype,
        x.size,
        xp.ascontiguousarray(x),
        xp.ascontiguousarray(mean),
        xp.ascontiguousarray(inv_std),
        xp.ascontiguousarray(gamma),
        xp.ascontiguousarray(beta),
        xhat,
        y,
        N,
        C,
        x.size // max(N * C, 1),
    )
    return xhat, y


def batch_norm_backward(gy: Any, xhat: Any, sums: Any, gamma: Any, inv_std: Any, m: int) -> tuple:
    """(dx, dgamma, dbeta) from dL/dy, xhat and the float64 sums (2, C) of gy and gy * xhat, in one launch;
    m = 0 for fixed statistics."""
    xp = get_array_module(gy)
    N, C = gy.shape[:2]
    _check_shape("batch_norm_backward", "xhat", xhat, gy.shape)
    _check_shape("batch_norm_backward", "sums", sums, (2, C))
    gx = xp.empty(gy.shape, gy.dtype)
    dgamma, dbeta = xp.zeros(C, gy.dtype), xp.zeros(C, gy.dtype)  # an empty batch launches nothing: 0
    _run(
        "batch_norm_backward",
        gy.dtype,
        gy.size,
        xp.ascontiguousarray(gy),
        xhat,
        xp.ascontiguousarray(sums),
        xp.ascontiguousarray(gamma),
        xp.ascontiguousarray(inv_std),
        gx,
        dgamma,
        dbeta,
        N,
        C,
        gy.size // max(N * C, 1),
        m,
    )
    return gx, dgamma, dbeta


# ---------------------------------------------------------------------------
# Softmax cross-entropy


def softmax_loss_forward(scores: Any, labels: Any, weight: Any, ignore_index: int) -> tuple:
    """Per-pixel losses (times their class's weight) and each counted pixel's weight, both (N, *spatial).

    Shapes: scores (N, C, *spatial), labels (N, *spatial), weight (C,).
    """
    xp = get_array_module(scores)
    N, C = scores.shape[:2]
    _check_shape("softmax_loss_forward", "labels", labels, (N,) + scores.shape[2:])
    _check_shape("softmax_loss_forward", "weight", weight, (C,))
    loss = xp.empty(labels.shape, dtype=scores.dtype)
    counted = xp.empty(labels.shape, dtype=scores.dtype)
    _run(
        "softmax_loss_forward",
        scores.dtype,
        loss.size,
        xp.ascontiguousarray(scores),
        _int64(labels),
        xp.ascontiguousarray(weight),
        loss,
        counted,
        N,
        C,
        loss.size // max(N, 1),
        ignore_index,
    )
    return loss, counted


def softmax_loss_backward(scores: Any, labels: Any, weight: Any, ignore_index: int, scale: Any) -> Any:
    """dL/dscores = (softmax - onehot) * weight[label] * scale[0] on counted pixels, 0 on ignored ones.

    ``scale`` is a one-element array on the device (dL/dloss / counted weight),
    so the host does not wait for the GPU to learn it.
    """
    xp = get_array_module(scores)
    N, C = scores.shape[:2]
    _check_shape("softmax_loss_backward", "labels", labels, (N,) + scores.shape[2:])
    _check_shape("softmax_loss_backward", "weight", weight, (C,))
    _check_shape("softmax_loss_backward", "scale", scale, (1,))
    grad = xp.empty(scores.shape, dtype=scores.dtype)
    _run(
        "softmax_loss_backward",
        scores.dtype,
        labels.size,
        xp.ascontiguousarray(scores),
        _int64(labels),
        xp.ascontiguousarray(weight),
        grad,
        N,
        C,
        labels.size // max(N, 1),
        ignore_index,
        scale,
    )
    return grad


def _int64(labels: Any) -> Any:
    xp = get_array_module(labels)
    return xp.ascontiguousarray(labels, dtype=np.int64)


# ---------------------------------------------------------------------------
# Optimiser updates (in place, over flat buffers)


def sgd_update(w: Any, g: Any, v: Any, rate: float, momentum: float, decay: float) -> None:
    """SGD's step on flat arrays, in place: v <- momentum * v + rate * (g + decay * w); w <- w - v."""
    xp = get_array_module(w)
    for name, a in (("g", g), ("v", v)):
        _check_shape("sgd_update", name, a, w.shape)
    _run("sgd_update", w.dtype, w.size, w, xp.ascontiguousarray(g), v, w.size, rate, momentum, decay)


def adam_update(
    w: Any, g: Any, m: Any, v: Any, rate: float, betas: tuple, correction2: float, eps: float, decay: float
) -> None:
    """Adam's step on flat arrays, in place (see optim.Adam); ``rate`` already divided by 1 - beta1^t.

    ``betas``, ``correction2`` and ``eps`` come as Python floats: 1 - beta is computed before anything is
    rounded to the arrays' dtype, as the NumPy branch does (1 - float32(0.999) would be 0.0009999871).
    """
    xp = get_array_module(w)
    for name, a in (("g", g), ("m", m), ("v", v)):
        _check_shape("adam_update", name, a, w.shape)
    (b1, b2), f = betas, w.dtype.type
    correction2, eps = f(correction2), f(eps)
    _run(
        "adam_update",
        w.dtype,
        w.size,
        w,
        xp.ascontiguousarray(g),
        m,
        v,
        w.size,
        rate,
        f(b1),
        f(1 - b1),
        f(b2),
        f(1 - b2),
        correction2,
        eps,
        decay,
    )
