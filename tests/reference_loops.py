"""Direct-loop definitions of the ops, for checking minifcn's vectorised forward passes.

Written from the definitions, one output element at a time, and independent of
minifcn: the output sizes come from enumerating windows, not from minifcn's
size helpers. Slow on purpose; use small inputs.
"""

from __future__ import annotations

import numpy as np


def window_starts(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> list[int]:
    """Start of each window in input coordinates (padding makes them negative).

    Floor mode: every window that lies wholly inside the padded input.
    Ceil mode: also one window that hangs over the end, if the position one
    stride before it (real or not) left pixels uncovered, and never one that
    starts in the right padding.
    """
    span = dilation * (kernel - 1) + 1
    padded_end = size + padding  # one past the last padded position
    starts: list[int] = []
    start = -padding
    while True:
        if start + span <= padded_end:
            starts.append(start)
        elif ceil_mode and start < size and start - stride + span < padded_end:
            starts.append(start)
        else:
            break
        start += stride
    return starts


def conv2d_loop(x, w, b, stride, padding, dilation):
    """y[n, o, i, j] = b[o] + sum_{c, kh, kw} w[o, c, kh, kw] * x[n, c, i*s - p + kh*d, j*s - p + kw*d] (0 outside)."""
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    rows = window_starts(H, KH, stride[0], padding[0], dilation[0], False)
    cols = window_starts(W, KW, stride[1], padding[1], dilation[1], False)
    y = np.zeros((N, OC, len(rows), len(cols)), dtype=np.float64)
    for n in range(N):
        for o in range(OC):
            for i, r in enumerate(rows):
                for j, c0 in enumerate(cols):
                    total = 0.0 if b is None else b[o]
                    for c in range(C):
                        for kh in range(KH):
                            for kw in range(KW):
                                yy, xx = r + kh * dilation[0], c0 + kw * dilation[1]
                                if 0 <= yy < H and 0 <= xx < W:
                                    total += w[o, c, kh, kw] * x[n, c, yy, xx]
                    y[n, o, i, j] = total
    return y


def conv_transpose2d_loop(x, w, b, stride, padding, dilation):
    """Scatter: each x[n, c, i, j] adds x * w[c, o, kh, kw] at (i*s + kh*d - p, j*s + kw*d - p)."""
    N, C, H, W = x.shape
    _, OC, KH, KW = w.shape
    full_h = (H - 1) * stride[0] + dilation[0] * (KH - 1) + 1  # before removing the padding
    full_w = (W - 1) * stride[1] + dilation[1] * (KW - 1) + 1
    full = np.zeros((N, OC, full_h, full_w), dtype=np.float64)
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    for o in range(OC):
                        for kh in range(KH):
                            for kw in range(KW):
                                full[n, o, i * stride[0] + kh * dilation[0], j * stride[1] + kw * dilation[1]] += (
                                    x[n, c, i, j] * w[c, o, kh, kw]
                                )
    y = full[:, :, padding[0] : full_h - padding[0], padding[1] : full_w - padding[1]]
    if b is not None:
        y = y + np.asarray(b).reshape(1, -1, 1, 1)
    return y


def max_pool2d_loop(x, kernel, stride, padding, dilation, ceil_mode):
    """Maximum over the input pixels under each window (padding never wins)."""
    N, C, H, W = x.shape
    rows = window_starts(H, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    cols = window_starts(W, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    y = np.empty((N, C, len(rows), len(cols)))
    for n in range(N):
        for c in range(C):
            for i, r in enumerate(rows):
                for j, c0 in enumerate(cols):
                    values = [
                        x[n, c, r + kh * dilation[0], c0 + kw * dilation[1]]
                        for kh in range(kernel[0])
                        for kw in range(kernel[1])
                        if 0 <= r + kh * dilation[0] < H and 0 <= c0 + kw * dilation[1] < W
                    ]
                    y[n, c, i, j] = max(values)
    return y


def max_pool2d_grad_loop(x, gy, kernel, stride, padding, dilation, ceil_mode):
    """dL/dx of max pooling: each window's gradient added to its first maximum in window order (no NaN)."""
    N, C, H, W = x.shape
    rows = window_starts(H, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    cols = window_starts(W, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    gx = np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for i, r in enumerate(rows):
                for j, c0 in enumerate(cols):
                    taps = [
                        (r + kh * dilation[0], c0 + kw * dilation[1])
                        for kh in range(kernel[0])
                        for kw in range(kernel[1])
                        if 0 <= r + kh * dilation[0] < H and 0 <= c0 + kw * dilation[1] < W
                    ]
                    best = taps[0]
                    for tap in taps[1:]:
                        if x[n, c, tap[0], tap[1]] > x[n, c, best[0], best[1]]:  # a tie keeps the first
                            best = tap
                    gx[n, c, best[0], best[1]] += gy[n, c, i, j]
    return gx


def avg_pool2d_loop(x, kernel, stride, padding, ceil_mode):
    """Sum of the input pixels under each window over the number of window positions inside the padded input."""
    N, C, H, W = x.shape
    rows = window_starts(H, kernel[0], stride[0], padding[0], 1, ceil_mode)
    cols = window_starts(W, kernel[1], stride[1], padding[1], 1, ceil_mode)
    y = np.empty((N, C, len(rows), len(cols)))
    for n in range(N):
        for c in range(C):
            for i, r in enumerate(rows):
                for j, c0 in enumerate(cols):
                    total, count = 0.0, 0
                    for kh in range(kernel[0]):
                        for kw in range(kernel[1]):
                            yy, xx = r + kh, c0 + kw
                            if -padding[0] <= yy < H + padding[0] and -padding[1] <= xx < W + padding[1]:
                                count += 1
                                if 0 <= yy < H and 0 <= xx < W:
                                    total += x[n, c, yy, xx]
                    y[n, c, i, j] = total / count
    return y


def softmax_cross_entropy_loop(scores, labels, ignore_index, reduction):
    """-log softmax(scores[n, :, i, j])[label] summed (or averaged) over the pixels that are not ignored."""
    N, C, H, W = scores.shape
    total, count = 0.0, 0
    for n in range(N):
        for i in range(H):
            for j in range(W):
                t = labels[n, i, j]
                if t == ignore_index:
                    continue
                s = scores[n, :, i, j].astype(np.float64)
                m = s.max()
                log_z = m + np.log(np.exp(s - m).sum())
                total += log_z - s[t]
                count += 1
    if reduction == "mean":
        return total / count if count else 0.0
    return total
