"""Output sizes and padding: the geometry every convolution and pooling shares.

Each size is computed by exactly one helper here, and every op, layer and
receptive-field trace calls it instead of re-deriving the formula.

A window of ``kernel`` taps spaced ``dilation`` apart spans
``dilation * (kernel - 1) + 1`` input pixels; sliding it with ``stride`` over
an input padded by ``padding`` on each side gives the sizes below.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module


def kernel_span(kernel: int, dilation: int = 1) -> int:
    """Input pixels covered by one window: ``dilation * (kernel - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution: ``floor((size + 2p - span) / s) + 1``."""
    return (size + 2 * padding - kernel_span(kernel, dilation)) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution: ``(size - 1) * s - 2p + span``.

    It is the input length of the convolution whose backward pass the
    transposed convolution is (the largest one, when several map to ``size``).
    """
    return (size - 1) * stride - 2 * padding + kernel_span(kernel, dilation)


def pool_output_size(
    size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output length of a pooling layer, in floor or ceil mode (Caffe's and PyTorch's rule).

    Ceil mode rounds the window count up, so a last, partial window covers
    the pixels that floor mode would drop; but that last window must start
    inside the input or its left padding, never in the right padding.
    The FCNs pool in ceil mode, which is why any input size works.
    """
    reach = size + 2 * padding - kernel_span(kernel, dilation)
    out = (-(-reach // stride) if ceil_mode else reach // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def pair(value: Any, name: str) -> tuple[int, int]:
    """``value`` as an (int, int) pair: an int means the same along H and W."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def pad2d(x: Any, top: int, left: int, height: int, width: int, value: float = 0.0, out: Any = None) -> Any:
    """Place ``x`` (N, C, H, W) at (top, left) in a (N, C, height, width) array filled with ``value``.

    ``height`` and ``width`` may cut rows and columns off the bottom and
    right, when no window reads them. Returns ``x`` itself when nothing is
    added or cut, unless ``out``, an (N, C, height, width) array to fill
    instead of a new one, is given.
    """
    N, C, H, W = x.shape
    xp = get_array_module(x)
    if out is not None:
        out.fill(value)
    elif top == 0 and left == 0 and height == H and width == W:
        return x
    elif value == 0:  # zeros come from calloc: no pass over memory that is overwritten anyway
        out = xp.zeros((N, C, height, width), dtype=x.dtype)
    else:
        out = xp.full((N, C, height, width), value, dtype=x.dtype)
    h, w = min(H, height - top), min(W, width - left)
    out[:, :, top : top + h, left : left + w] = x[:, :, :h, :w]
    return out


#: The largest column matrix the fast routes (and the GPU) build at once; larger ones are built and multiplied a
#: band of output rows at a time; chosen by measurement (docs/performance.md, "Knobs"), and the buffer is part of
#: every pass's memory.
IM2COL_BUDGET_BYTES = 32 * 2**20


def row_bands(n_rows: int, bytes_per_row: int) -> list[tuple[int, int]]:
    """Output rows [0, n_rows) cut into bands whose columns fit IM2COL_BUDGET_BYTES (at least one row each)."""
    per_band = max(1, IM2COL_BUDGET_BYTES // max(1, bytes_per_row))
    return [(r0, min(r0 + per_band, n_rows)) for r0 in range(0, n_rows, per_band)]


def window_views(out_hw: tuple, kernel: tuple, stride: tuple, dilation: tuple):
    """Yield (k, index) for each tap k = kh*KW + kw of a window: ``xpad[index][n, c, i, j]`` is
    ``xpad[n, c, i*sh + kh*dh, j*sw + kw*dw]``, that tap of window (i, j), for every window at once."""
    (OH, OW), (KH, KW), (sh, sw), (dh, dw) = out_hw, kernel, stride, dilation
    for kh in range(KH):
        for kw in range(KW):
            h0, w0 = kh * dh, kw * dw
            rows, cols = slice(h0, h0 + (OH - 1) * sh + 1, sh), slice(w0, w0 + (OW - 1) * sw + 1, sw)
            yield kh * KW + kw, (slice(None), slice(None), rows, cols)
