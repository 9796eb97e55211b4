"""Scratch buffers for the fast CPU routes: one per thread and use, reused from pass to pass.

A new array of hundreds of MiB costs a page fault per 4 KiB the first time
it is written, about as long as a copy into it. The convolution routes build
their columns band by band (or tile by tile) into the same buffer instead, so
it is faulted in once. A buffer's contents live until the next request for
the same use on the same thread.

Bounded: a buffer is kept only up to ``KEEP_BYTES``; a larger request gets a
new array that is dropped with its last use. So the memory kept is at most
KEEP_BYTES for each thread (the caller's and the pool's, ``threads.THREADS``
at most), use and dtype, and ``release()`` frees it all.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

#: The largest buffer kept for reuse: 64 MiB, room for a band of ``geometry.IM2COL_BUDGET_BYTES`` (32 MiB).
KEEP_BYTES = 64 * 2**20

_buffers: dict[tuple[int, str, np.dtype], np.ndarray] = {}
_lock = threading.Lock()


def get(n: int, dtype: Any, use: str = "columns") -> np.ndarray:
    """A flat array of ``n`` elements of ``dtype`` for ``use`` on the calling thread (uninitialised)."""
    dtype = np.dtype(dtype)
    if n * dtype.itemsize > KEEP_BYTES:
        return np.empty(n, dtype=dtype)
    key = (threading.get_ident(), use, dtype)
    buffer = _buffers.get(key)
    if buffer is None or buffer.size < n:
        buffer = np.empty(max(n, 0 if buffer is None else buffer.size), dtype=dtype)
        with _lock:
            _buffers[key] = buffer
    return buffer[:n]


def kept_bytes() -> int:
    """The bytes the kept buffers hold now."""
    with _lock:
        return sum(b.nbytes for b in _buffers.values())


def release() -> None:
    """Drop every kept buffer (the next pass makes new ones)."""
    with _lock:
        _buffers.clear()
