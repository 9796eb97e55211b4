"""Fast CPU route of batch normalisation: the channels over the cores, one pass over the map fewer.

Each thread takes a range of channels (``threads.by_channels``). The forward
pass keeps x - mean (``centered``) rather than xhat, and computes
y = (x - mean) * (gamma / std) + beta in one multiply and one add, a pass over
the map fewer than normalising first; the backward pass scales by 1 / std
where the formulas use xhat, and works in place. Figures:
docs/performance.md, "Batch norm".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..reduce import channel_dot, channel_sum, channel_sums
from . import threads


def _per_channel(v: Any) -> Any:
    return v.reshape(1, -1, 1, 1)


def forward(bn: Any, x: Any, gamma: Any, beta: Any) -> Any:
    """y, and ``bn.centered`` (x - mean) and ``bn.inv_std`` for backward; the running averages moved
    while ``bn.training`` (``bn`` is the BatchNorm2d function: its settings and what it keeps)."""
    C = x.shape[1]
    y, bn.centered, bn.inv_std = np.empty_like(x), np.empty_like(x), np.empty(C, dtype=x.dtype)

    def channels(c0: int, c1: int) -> None:
        xc, m, inv_std, centered = x[:, c0:c1], x.size // C, bn.inv_std[c0:c1], bn.centered[:, c0:c1]
        if bn.training:
            mean = (channel_sum(xc) / m).astype(x.dtype)
            np.subtract(xc, _per_channel(mean), out=centered)
            var = (channel_dot(centered, centered) / m).astype(x.dtype)
            bn.update_running(mean, var, m, c0, c1)
        else:
            var = bn.running_var[c0:c1]
            np.subtract(xc, _per_channel(bn.running_mean[c0:c1]), out=centered)
        inv_std[...] = 1 / np.sqrt(var + x.dtype.type(bn.eps))
        out = y[:, c0:c1]
        np.multiply(centered, _per_channel(gamma[c0:c1] * inv_std), out=out)
        out += _per_channel(beta[c0:c1])

    threads.by_channels(channels, C, x.nbytes)
    return y


def backward(bn: Any, gy: Any) -> tuple:
    """(dx, dgamma, dbeta) from what ``forward`` kept, the channels over the cores."""
    C, m = gy.shape[1], gy.size // gy.shape[1]
    dx, dgamma, dbeta = np.empty_like(gy), np.empty(C, dtype=gy.dtype), np.empty(C, dtype=gy.dtype)

    def channels(c0: int, c1: int) -> None:
        g, xc, out, inv_std = gy[:, c0:c1], bn.centered[:, c0:c1], dx[:, c0:c1], bn.inv_std[c0:c1]
        sums = channel_sums(g, xc)  # sum of dy, and of dy * (x - mean): dgamma once scaled by 1 / std
        dbeta[c0:c1], dgamma[c0:c1] = sums[0], sums[1] * inv_std
        scale = _per_channel(bn.gamma[c0:c1] * inv_std)
        if not bn.training:  # with fixed statistics, dx is a per-channel affine map of dy alone
            np.multiply(g, scale, out=out)
            return
        # dx = scale * (dy - dbeta / m - xhat * dgamma / m), xhat = (x - mean) / std, in place: no temporary
        np.multiply(xc, _per_channel(-dgamma[c0:c1] * inv_std / m), out=out)
        out += g
        out -= _per_channel(dbeta[c0:c1] / m)
        out *= scale

    threads.by_channels(channels, C, gy.nbytes)
    return dx, dgamma, dbeta
