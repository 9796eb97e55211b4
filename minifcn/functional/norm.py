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

That is the reference (``BatchNorm2d._forward_reference`` and its
backward). On the CPU the fast route of ``cpu/norm.py`` splits the channels
over the cores. On a GPU the same formulas run as four launches forward and three backward
(cuda/reduce.cu for the sums, cuda/batch_norm.cu for the rest) instead of a
dozen CuPy operations: a small net's step is made of launches, and each one
costs the host ~10 microseconds.
"""

from __future__ import annotations

from typing import Any

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..cuda import kernels
from . import routes
from .cpu import norm as cpu_norm
from .reduce import channel_dot, channel_sum


def _per_channel(v: Any) -> Any:
    """(C,) -> (1, C, 1, 1), to combine with (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


FORWARD = routes.declare("batch_norm", "gpu", "reference", "channels")
BACKWARD = routes.declare("batch_norm backward", "gpu", "reference", "channels")


class BatchNorm2d(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta per channel; batch statistics while training.

    Shapes: x (N, C, H, W); gamma, beta, running_mean, running_var (C,).
    The running arrays are updated in place while training.

    Routes, forward and backward alike:

    | route     | when                    | what it does                                               |
    |-----------|-------------------------|------------------------------------------------------------|
    | gpu       | CuPy arrays             | four launches forward, three backward (cuda/batch_norm.cu) |
    | reference | ``minifcn.reference()`` | the formulas above, in ``_forward_reference`` and its pair |
    | channels  | any other CPU input     | channels over the cores, x - mean kept (cpu/norm.py)       |
    """

    def __init__(self, running_mean: Any, running_var: Any, training: bool, momentum: float, eps: float):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def _forward_reference(self, x: Any, gamma: Any, beta: Any) -> Any:
        """The formulas, on the whole map: keeps x - mean and 1 / std (xhat is their product)."""
        xp = get_array_module(x)
        m = x.size // x.shape[1]
        if self.training:
            mean = (channel_sum(x) / m).astype(x.dtype)  # sums in float64 (reduce.py)
            self.centered = x - _per_channel(mean)
            var = (channel_dot(self.centered, self.centered) / m).astype(x.dtype)
            self.update_running(mean, var, m, 0, x.shape[1])
        else:
            var = self.running_var
            self.centered = x - _per_channel(self.running_mean)
        self.inv_std = 1 / xp.sqrt(var + x.dtype.type(self.eps))
        xhat = self.centered * _per_channel(self.inv_std)
        return _per_channel(gamma) * xhat + _per_channel(beta)

    def _backward_reference(self, gy: Any) -> tuple:
        m = gy.size // gy.shape[1]
        xhat = self.centered * _per_channel(self.inv_std)
        dbeta = channel_sum(gy).astype(gy.dtype)
        dgamma = channel_dot(gy, xhat).astype(gy.dtype)
        scale = _per_channel(self.gamma * self.inv_std)
        if not self.training:  # fixed statistics: y is an affine map of x alone
            return gy * scale, dgamma, dbeta
        return scale * (gy - _per_channel(dbeta / m) - xhat * _per_channel(dgamma / m)), dgamma, dbeta

    def update_running(self, mean: Any, var: Any, m: int, c0: int, c1: int) -> None:
        """running = (1 - momentum) * running + momentum * batch, for channels [c0, c1); the variance unbiased."""
        t = mean.dtype.type(self.momentum)
        running_mean, running_var = self.running_mean[c0:c1], self.running_var[c0:c1]
        running_mean *= 1 - t
        running_mean += t * mean
        running_var *= 1 - t
        running_var += t * var * mean.dtype.type(m / (m - 1))

    def forward(self, x: Any, gamma: Any, beta: Any) -> Any:
        xp = get_array_module(x)
        _check(x, gamma, beta, self.running_mean, self.running_var, self.training)
        self.gamma, m = gamma, x.size // x.shape[1]
        if kernels.on_gpu(x):  # four launches: the sums, the statistics, one pass for xhat and y (cuda/batch_norm.cu)
            routes.took(FORWARD, "gpu")
            if self.training:
                sums = kernels.channel_sums(x, x)
                mean, self.inv_std = kernels.batch_norm_statistics(
                    sums, self.running_mean, self.running_var, m, self.momentum, self.eps
                )
            else:
                mean, self.inv_std = self.running_mean, 1 / xp.sqrt(self.running_var + x.dtype.type(self.eps))
            self.xhat, y = kernels.batch_norm_forward(x, mean, self.inv_std, gamma, beta)
            return y
        if routes.use_reference():
            routes.took(FORWARD, "reference")
            self.route = "reference"
            return self._forward_reference(x, gamma, beta)
        routes.took(FORWARD, "channels")
        self.route = "channels"
        return cpu_norm.forward(self, x, gamma, beta)

    def backward(self, gy: Any) -> tuple:
        m = gy.size // gy.shape[1]
        if kernels.on_gpu(gy):  # the sums, then one pass for dx
            routes.took(BACKWARD, "gpu")
            sums = kernels.channel_sums(gy, self.xhat)
            return kernels.batch_norm_backward(gy, self.xhat, sums, self.gamma, self.inv_std, m if self.training else 0)
        routes.took(BACKWARD, self.route)  # what the forward pass kept decides
        return self._backward_reference(gy) if self.route == "reference" else cpu_norm.backward(self, gy)


def _check(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: bool) -> None:
    if x.ndim != 4:
        raise ValueError(f"batch_norm: input must be 4-D (N, C, H, W), got shape {x.shape}")
    C = x.shape[1]
    for name, a in (("weight", gamma), ("bias", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if a.shape != (C,):
            raise ValueError(f"batch_norm: {name} must have shape ({C},) for input {x.shape}, got {a.shape}")
        if a.dtype != x.dtype:
            raise TypeError(f"batch_norm: {name} dtype {a.dtype} differs from input dtype {x.dtype}")
    if training and x.size // C < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, input {x.shape}")


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
