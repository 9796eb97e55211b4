"""Local response normalisation across channels (AlexNet's and GoogLeNet's LRN; Caffe's ACROSS_CHANNELS).

Each value is divided by a power of the energy of its neighbours along the
channel axis, at the same pixel:

    scale[n, c, h, w] = k + (alpha / size) * sum over c' in [c - r, c + r] of x[n, c', h, w]^2,   r = size // 2
    y = x * scale^(-beta)

Channels beyond the first and last count as zeros; ``size`` is odd (as Caffe
requires). Defaults are GoogLeNet's: size 5, alpha 1e-4, beta 0.75, k 1.
(Not in the FCN paper's own layers; its GoogLeNet trunk has two, Table 1.)

Backward, with S = scale:
    dL/dx[c] = dy[c] * S[c]^(-beta)
               - (2 * alpha * beta / size) * x[c] * sum over c' in [c - r, c + r] of dy[c'] * y[c'] / S[c']
(the window is symmetric, so c' "sees" c exactly when c sees c').
"""

from __future__ import annotations

from typing import Any

from ..autograd import Function, Tensor


def _channel_window_sum(a: Any, radius: int) -> Any:
    """sum over c' in [c - radius, c + radius] of a[:, c'] (zeros outside), for every c. Shapes: (N, C, H, W)."""
    out = a.copy()
    C = a.shape[1]
    for d in range(1, radius + 1):  # a loop over the window's taps, not over channels
        out[:, d:] += a[:, : C - d]
        out[:, : C - d] += a[:, d:]
    return out


class LocalResponseNorm(Function):
    """LRN across channels. Shapes: x (N, C, H, W) -> y (N, C, H, W)."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"local_response_norm: size must be a positive odd int (as in Caffe), got {size!r}")
        if alpha < 0 or beta < 0 or k <= 0:
            raise ValueError(f"local_response_norm: need alpha >= 0, beta >= 0, k > 0; got {alpha}, {beta}, {k}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Any) -> Any:
        if x.ndim != 4 or x.dtype.kind != "f":
            raise ValueError(
                f"local_response_norm: input must be a floating (N, C, H, W) array, got {x.dtype} {x.shape}"
            )
        f = x.dtype.type
        self.scale = f(self.k) + f(self.alpha / self.size) * _channel_window_sum(x * x, self.size // 2)
        self.x = x
        self.y = x * self.scale ** f(-self.beta)
        return self.y

    def backward(self, gy: Any) -> Any:
        f = gy.dtype.type
        inner = _channel_window_sum(gy * self.y / self.scale, self.size // 2)
        return gy * self.scale ** f(-self.beta) - f(2 * self.alpha * self.beta / self.size) * self.x * inner


def local_response_norm(x: Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Tensor:
    """Local response normalisation across ``size`` neighbouring channels (Caffe's LRN, PyTorch's LocalResponseNorm)."""
    return LocalResponseNorm(size, alpha, beta, k)(x)
