"""Sums over many pixels that keep their digits: per-channel sums for batch norm and bias gradients.

A float32 running sum carries about seven significant digits. Add 10^5
values one after another and the rounding of each addition piles up; worse,
batch norm's backward pass lives on sums that nearly cancel (dbeta = sum of
dy, dgamma = sum of dy * xhat, both small differences of large terms), so
what is lost is most of the answer. Measured on tiny-bn FCN-8s (2x3x48x54,
pad 100, so conv1's maps hold ~62,000 pixels per image): float32 running sums
put the float32 weight gradients up to 6e-2 (relative L2) away from float64;
the sums below bring that to ~5e-5 (tests/test_numerics.py).

How, without an (N, C, H, W) float64 copy:

- on the CPU, each channel's values are cut into blocks of ``BLOCK`` pixels;
  a block's sum (NumPy's pairwise sum) or dot product (einsum's loop) is
  exact to a few float32 roundings of a block, not of the whole image, and
  the blocks are added in float64. Error no longer grows with the image.
- on a GPU, the ``channel_sums`` kernel (cuda/reduce.cu) keeps every partial
  sum in double precision.

Both return float64; callers cast the result back to the data's dtype once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..cuda import kernels

#: Pixels per block of a CPU sum: float32 error is that of BLOCK terms, not of the whole map.
BLOCK = 256


def channel_sums(a: Any, b: Any) -> tuple[Any, Any]:
    """Per channel c, the float64 sums over n and the pixels of ``a`` and of ``a * b``.

    Shapes: a, b (N, C, H, W) -> two (C,) float64 arrays.
    """
    if kernels.on_gpu(a, b):
        sums = kernels.channel_sums(a, b)
        return sums[0], sums[1]
    a3, b3 = _rows(a), _rows(b)
    return _block_sums(a3), _block_dots(a3, b3)


def channel_dot(a: Any, b: Any) -> Any:
    """Per channel c, the float64 sum over n and the pixels of ``a * b`` (N, C, H, W) -> (C,)."""
    if kernels.on_gpu(a, b):
        return kernels.channel_sums(a, b)[1]
    return _block_dots(_rows(a), _rows(b))


def channel_sum(a: Any) -> Any:
    """Per channel c, the float64 sum over n and the pixels of ``a`` (N, C, H, W) -> (C,)."""
    if kernels.on_gpu(a):
        return a.sum(axis=(0, 2, 3), dtype=np.float64)  # CuPy's tree reduction, accumulated in float64
    return _block_sums(_rows(a))


def total(a: Any) -> Any:
    """The float64 sum of every element of ``a`` (a 0-d array on ``a``'s device)."""
    return get_array_module(a).sum(a, dtype=np.float64)


def _rows(a: Any) -> Any:
    """(N, C, H, W) -> (N, C, P): each (n, c) a row of P pixels (a view where the pixels are contiguous,
    as in a range of channels of a whole map)."""
    N, C = a.shape[:2]
    return a.reshape(N, C, -1)


def _split(rows: Any) -> tuple[Any, Any]:
    """(N, C, P) -> (N, C, q, BLOCK) whole blocks (a view) and the (N, C, P - q*BLOCK) rest."""
    N, C, P = rows.shape
    q = P // BLOCK
    return rows[:, :, : q * BLOCK].reshape(N, C, q, BLOCK), rows[:, :, q * BLOCK :]


def _block_sums(rows: Any) -> Any:
    blocks, rest = _split(rows)
    return blocks.sum(axis=3).sum(axis=(0, 2), dtype=np.float64) + rest.sum(axis=2).sum(axis=0, dtype=np.float64)


def _block_dots(a: Any, b: Any) -> Any:
    (a_blocks, a_rest), (b_blocks, b_rest) = _split(a), _split(b)
    whole = np.einsum("ncqp,ncqp->ncq", a_blocks, b_blocks)  # one float32 dot product per block
    rest = np.einsum("ncp,ncp->nc", a_rest, b_rest)
    return whole.sum(axis=(0, 2), dtype=np.float64) + rest.sum(axis=0, dtype=np.float64)
