"""Fully connected layers: linear and flatten, the classifier's head.

The FCNs have none: Sec. 3.1 turns them into convolutions (see
``minifcn.surgery.convolutionalize``). They are here so that the ImageNet
classifiers (``models.VGG16``, ``models.AlexNet``) can be built, loaded with
their weights and compared with their convolutionalized selves.
"""

from __future__ import annotations

from typing import Any

from ..autograd import Function, Tensor


class Linear(Function):
    """y = x @ w^T + b.

    Shapes:
        x: (N, IN); w: (OUT, IN); b: (OUT,)
        y: (N, OUT)

    Backward: dx = dy @ w; dw = dy^T @ x; db sums dy over N.
    """

    def forward(self, x: Any, w: Any, b: Any = None) -> Any:
        if x.ndim != 2 or w.ndim != 2:
            raise ValueError(f"linear: need input (N, IN) and weight (OUT, IN), got {x.shape} and {w.shape}")
        if x.shape[1] != w.shape[1]:
            raise ValueError(
                f"linear: input {x.shape} has {x.shape[1]} features, weight {w.shape} expects {w.shape[1]}"
            )
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias {b.shape} does not match weight {w.shape}; expected ({w.shape[0]},)")
        for name, a in (("weight", w), ("bias", b)):
            if a is not None and a.dtype != x.dtype:
                raise TypeError(f"linear: input is {x.dtype} but {name} is {a.dtype} (minifcn does not cast)")
        self.x, self.w, self.has_bias = x, w, b is not None
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def backward(self, gy: Any) -> tuple:
        gx = gy @ self.w if self.needs_input_grad[0] else None
        gw = gy.T @ self.x if self.needs_input_grad[1] else None
        return (gx, gw, gy.sum(axis=0)) if self.has_bias else (gx, gw)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Fully connected layer: ``x @ weight.T + bias`` with weight (OUT, IN)."""
    f = Linear()
    return f(x, weight) if bias is None else f(x, weight, bias)


class Flatten(Function):
    """(N, C, H, W) -> (N, C*H*W) in C, H, W order (as Caffe and PyTorch flatten). Backward: reshape back."""

    def forward(self, x: Any) -> Any:
        if x.ndim < 2:
            raise ValueError(f"flatten: input must have a batch axis and at least one more, got shape {x.shape}")
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, gy: Any) -> Any:
        return gy.reshape(self.shape)


def flatten(x: Tensor) -> Tensor:
    """Keep the batch axis, join all others: (N, C, H, W) -> (N, C*H*W)."""
    return Flatten()(x)
