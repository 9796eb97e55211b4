"""Fast CPU route of ReLU: each (n, c) plane against a plane of zeros, the channels over the cores.

NumPy's ``maximum(x, 0)`` compares with a scalar and runs without its vector
loop; the maximum of two arrays runs at the speed of a copy. So the forward
pass compares each plane with one shared, read-only plane of zeros; the
values are those of ``maximum(x, 0)``, NaN and infinities included.
Backward splits ``dy * (y > 0)`` over the channels. Figures:
docs/performance.md, "ReLU".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import threads


def applies(x: Any) -> bool:
    """A NumPy array of at least 2 dimensions whose planes are contiguous (not a view that skips)."""
    return isinstance(x, np.ndarray) and x.ndim >= 2 and x.flags.c_contiguous


def forward(x: Any, inplace: bool) -> Any:
    """max(x, 0), into x itself when ``inplace``."""
    y = x if inplace else np.empty_like(x)
    N, C = x.shape[:2]
    zeros = _zeros(math.prod(x.shape[2:]), x.dtype)  # one plane of zeros, shared by every (n, c)

    def channels(c0: int, c1: int) -> None:  # (N, c, plane) views: each plane is contiguous
        planes = (N, c1 - c0, zeros.size)
        np.maximum(x[:, c0:c1].reshape(planes), zeros, out=y[:, c0:c1].reshape(planes))

    threads.by_channels(channels, C, x.nbytes)
    return y


def backward(gy: Any, y: Any) -> Any:
    """dy where y > 0, else 0, the channels over the cores."""
    gx = np.empty_like(gy)
    threads.by_channels(
        lambda c0, c1: np.multiply(gy[:, c0:c1], y[:, c0:c1] > 0, out=gx[:, c0:c1]), gy.shape[1], gy.nbytes
    )
    return gx


def _zeros(n: int, dtype: Any) -> np.ndarray:
    """n zeros of ``dtype``, read-only: a slice of one buffer per dtype, grown to the largest plane asked for."""
    zeros = _ZEROS.get(np.dtype(dtype))
    if zeros is None or zeros.size < n:
        zeros = _ZEROS[np.dtype(dtype)] = np.zeros(n, dtype)
        zeros.flags.writeable = False
    return zeros[:n]


_ZEROS: dict = {}
