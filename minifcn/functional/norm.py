"""Batch normalisation (Ioffe and Szegedy, 2015): not in the FCN paper, but what lets a small net
learn from scratch in minutes (the ``tiny-bn`` backbone of the quick preset).

Training: each channel c is normalised by the mean and variance of its
values over the batch and all pixels, then scaled and shifted:

    mu_c = mean over (n, i, j) of x[n, c, i, j]      var_c likewise (biased)
    xhat = (x - mu_c) / sqrt(var_c + eps)
    y    = gamma_c * xhat + beta_c

and the running averages move towards the batch's statistics,
``running = (1 - momentum) * running + momentum * batch`` (the variance
unbiased, by m / (m - 1), as in PyTorch). Evaluation uses the running
averages instead, so y is a fixed per-channel affine map of x.

Backward (training), with m = N*H*W values per channel:

    dbeta  = sum of dy                 dgamma = sum of dy * xhat
    dx     = gamma / sqrt(var + eps) * (dy - dbeta / m - xhat * dgamma / m)

The two subtracted terms are there because every x moves mu and var.

The sums over the batch and the pixels (mu, var, dbeta, dgamma) are
accumulated in float64 (``reduce.channel_sums``), whatever the data's dtype:
dbeta and dgamma are small differences of large sums, and float32 running
sums over a large map lose most of their digits.

On a GPU the same formulas run as four launches forward and three backward
(cuda/reduce.cu for the sums, cuda/batch_norm.cu for the rest) instead of a
dozen CuPy operations: a small net's step is made of launches, and each one
costs the host ~10 microseconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..cuda import kernels
from . import threads
from .reduce import channel_dot, channel_sum, channel_sums


def _per_channel(v: Any) -> Any:
    """(C,) -> (1, C, 1, 1), to combine with (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


class BatchNorm2d(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta per channel; batch statistics while training.

    Shapes: x (N, C, H, W); gamma, beta, running_mean, running_var (C,).
    The running arrays are updated in place while training.
    """

    def __init__(self, running_mean: Any, running_var: Any, training: bool, momentum: float, eps: float):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x: Any, gamma: Any, beta: Any) -> Any:
        xp = get_array_module(x)
        if x.ndim != 4:
            raise ValueError(f"batch_norm: input must be 4-D (N, C, H, W), got shape {x.shape}")
        C = x.shape[1]
        for name, a in (
            ("weight", gamma),
            ("bias", beta),
            ("running_mean", self.running_mean),
            ("running_var", self.running_var),
        ):
            if a.shape != (C,):
                raise ValueError(f"batch_norm: {name} must have shape ({C},) for input {x.shape}, got {a.shape}")
            if a.dtype != x.dtype:
                raise TypeError(f"batch_norm: {name} dtype {a.dtype} differs from input dtype {x.dtype}")
        if self.training and x.size // C < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, input {x.shape}")
        self.gamma, m = gamma, x.size // C
        if kernels.on_gpu(x):  # four launches: the sums, the statistics, one pass for xhat and y (cuda/batch_norm.cu)
            if self.training:
                sums = kernels.channel_sums(x, x)
                mean, self.inv_std = kernels.batch_norm_statistics(
                    sums, self.running_mean, self.running_var, m, self.momentum, self.eps
                )
            else:
                mean, self.inv_std = self.running_mean, 1 / xp.sqrt(self.running_var + x.dtype.type(self.eps))
            self.xhat, y = kernels.batch_norm_forward(x, mean, self.inv_std, gamma, beta)
            return y
        y, self.centered, self.inv_std = xp.empty_like(x), xp.empty_like(x), xp.empty(C, dtype=x.dtype)
        threads.by_channels(lambda c0, c1: self._forward_channels(x, gamma, beta, y, c0, c1), C, x.nbytes)
        return y

    def _forward_channels(self, x: Any, gamma: Any, beta: Any, y: Any, c0: int, c1: int) -> None:
        """The CPU's forward pass for channels [c0, c1): statistics, running averages and y.

        It keeps x - mean (``centered``) rather than xhat: y = (x - mean) *
        (gamma / sqrt(var + eps)) + beta in one multiply and one add, a pass
        over the map fewer than normalising first; backward scales by
        1 / sqrt(var + eps) where it needs xhat.
        """
        x, m, inv_std = x[:, c0:c1], x.size // x.shape[1], self.inv_std[c0:c1]
        centered = self.centered[:, c0:c1]
        if self.training:
            mean = (channel_sum(x) / m).astype(x.dtype)
            np.subtract(x, _per_channel(mean), out=centered)
            var = (channel_dot(centered, centered) / m).astype(x.dtype)
            t = x.dtype.type(self.momentum)
            running_mean, running_var = self.running_mean[c0:c1], self.running_var[c0:c1]
            running_mean *= 1 - t
            running_mean += t * mean
            running_var *= 1 - t
            running_var += t * var * x.dtype.type(m / (m - 1))
        else:
            var = self.running_var[c0:c1]
            np.subtract(x, _per_channel(self.running_mean[c0:c1]), out=centered)
        inv_std[...] = 1 / np.sqrt(var + x.dtype.type(self.eps))
        out = y[:, c0:c1]
        np.multiply(centered, _per_channel(gamma[c0:c1] * inv_std), out=out)
        out += _per_channel(beta[c0:c1])

    def backward(self, gy: Any) -> tuple:
        m = gy.size // gy.shape[1]
        if kernels.on_gpu(gy):  # the sums, then one pass for dx
            sums = kernels.channel_sums(gy, self.xhat)
            return kernels.batch_norm_backward(gy, self.xhat, sums, self.gamma, self.inv_std, m if self.training else 0)
        C = gy.shape[1]
        dx, dgamma, dbeta = np.empty_like(gy), np.empty(C, dtype=gy.dtype), np.empty(C, dtype=gy.dtype)

        def channels(c0: int, c1: int) -> None:
            g, xc, out = gy[:, c0:c1], self.centered[:, c0:c1], dx[:, c0:c1]
            inv_std = self.inv_std[c0:c1]
            sums = channel_sums(g, xc)  # sum of dy, and of dy * (x - mean): dgamma once scaled by 1 / std
            dbeta[c0:c1], dgamma[c0:c1] = sums[0], sums[1] * inv_std
            scale = _per_channel(self.gamma[c0:c1] * inv_std)
            if not self.training:  # with fixed statistics, dx is a per-channel affine map of dy alone
                np.multiply(g, scale, out=out)
                return
            # dx = scale * (dy - dbeta / m - xhat * dgamma / m), xhat = (x - mean) / std, in place: no temporary
            np.multiply(xc, _per_channel(-dgamma[c0:c1] * inv_std / m), out=out)
            out += g
            out -= _per_channel(dbeta[c0:c1] / m)
            out *= scale

        threads.by_channels(channels, C, gy.nbytes)
        return dx, dgamma, dbeta


def batch_norm(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor,
    bias: Tensor,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation of (N, C, H, W) per channel. ``running_mean`` and ``running_var`` are (C,)
    arrays, updated in place while ``training`` and used instead of the batch's statistics otherwise."""
    return BatchNorm2d(running_mean, running_var, training, momentum, eps)(x, weight, bias)
