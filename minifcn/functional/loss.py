"""Log-softmax and the per-pixel softmax cross-entropy with an ignore label.

Sec. 3 of the paper: "if the loss function is a sum over the spatial
dimensions of the final layer ... its gradient will be a sum over the
gradients of each of its spatial components". The FCN loss is the
multinomial logistic loss of every pixel, summed (the reference's
"unnormalised" loss, ``reduction='sum'``) or averaged over the pixels that
count (``reduction='mean'``). Label 255 marks void pixels (object borders in
PASCAL VOC) that count for nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function, Tensor
from ..backend import device_of, get_array_module
from ..cuda import kernels
from . import routes
from .cpu import loss as cpu_loss
from .reduce import total

FORWARD = routes.declare("softmax_cross_entropy", "gpu", "reference", "in place")


def _log_softmax(x: Any, axis: int) -> Any:
    """Stable log-softmax: subtract the max before exponentiating, so no score overflows."""
    xp = get_array_module(x)
    z = x - x.max(axis=axis, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``axis``. Backward: dx = dy - softmax(x) * sum(dy)."""

    def __init__(self, axis: int = 1):
        self.axis = axis

    def forward(self, x: Any) -> Any:
        if x.dtype.kind != "f":
            raise TypeError(f"log_softmax: input must be floating point, got {x.dtype}")
        self.y = _log_softmax(x, self.axis)
        return self.y

    def backward(self, gy: Any) -> Any:
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def log_softmax(x: Tensor, axis: int = 1) -> Tensor:
    """Log of the softmax along ``axis`` (the class axis, 1, by default), computed stably."""
    return LogSoftmax(axis)(x)


def _check_labels(scores: Any, labels: Any, ignore_index: int) -> None:
    if scores.ndim < 2:
        raise ValueError(f"softmax_cross_entropy: scores must be (N, C, ...) , got shape {scores.shape}")
    if scores.dtype.kind != "f":
        raise TypeError(f"softmax_cross_entropy: scores must be floating point, got {scores.dtype}")
    if not hasattr(labels, "dtype") or labels.dtype.kind not in "iu":
        kind = getattr(labels, "dtype", type(labels).__name__)
        raise TypeError(
            f"softmax_cross_entropy: labels must be an integer array, got {kind}; "
            "class indices are integers (use labels.astype(numpy.int64) if they are whole numbers stored as floats)"
        )
    expected = (scores.shape[0],) + scores.shape[2:]
    if labels.shape != expected:
        raise ValueError(
            f"softmax_cross_entropy: labels of shape {labels.shape} do not match scores of shape "
            f"{scores.shape}: expected labels of shape {expected}"
        )
    if device_of(labels) != device_of(scores):
        raise ValueError(
            f"softmax_cross_entropy: scores are on {device_of(scores)}, labels on {device_of(labels)}; "
            "move the labels with minifcn.backend.to_device"
        )
    xp = get_array_module(labels)
    C = scores.shape[1]
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= C))
    if bool(bad.any()):
        values = sorted(int(v) for v in xp.unique(labels[bad])[:10].tolist())
        raise ValueError(
            f"softmax_cross_entropy: {int(bad.sum())} label(s) outside [0, {C}) that are not the ignore "
            f"index {ignore_index}; values: {values}"
        )


def _check_weight(scores: Any, weight: Any) -> Any:
    """The class weights as a contiguous (C,) array of the scores' dtype on their device, or a clear error.

    Host weights (a list, a NumPy array) are checked for finite, non-negative
    values before they are moved, so that the check never waits for a GPU;
    weights already on the GPU are taken as they are.
    """
    xp = get_array_module(scores)
    C = scores.shape[1]
    if device_of(weight) == "cuda":
        if device_of(scores) != "cuda":
            raise ValueError("softmax_cross_entropy: scores are on cpu, the class weights on cuda")
        w = weight.astype(scores.dtype, copy=False)
    else:
        w = np.asarray(weight, dtype=scores.dtype)
        if w.ndim == 1 and not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError(f"softmax_cross_entropy: class weights must be finite and >= 0, got {w.tolist()}")
    if w.shape != (C,):
        raise ValueError(f"softmax_cross_entropy: weight must have one value per class, shape ({C},), got {w.shape}")
    return xp.ascontiguousarray(xp.asarray(w))


class SoftmaxCrossEntropy(Function):
    """Per-pixel multinomial logistic loss with an ignore label.

    Shapes: scores (N, C, H, W) (or (N, C, ...)), labels (N, H, W) integers
    -> loss, a 0-d array.

    Both branches first compute each pixel's loss (0 where ignored) and a 1/0
    "counted" map, then add them up in float64 (``reduce.total``), so the
    mean keeps its digits on a large image. The scale (1 / count for 'mean')
    stays a 0-d array on the device: on a GPU nothing here waits for the GPU
    except the label check.

    With class weights w (C,), pixel i counts w[label_i] times: its loss is
    multiplied by it, and 'mean' divides by the sum of the counted pixels'
    weights (PyTorch's convention), so that weights that are all equal
    change nothing.

    Backward: dscores = w[label] * (softmax(scores) - onehot(labels)) on
    counted pixels, 0 on ignored ones; times 1 / (sum of the counted weights)
    for 'mean'.

    Routes of the forward pass (the backward pass is one on each device):

    | route     | when                    | what it does                                         |
    |-----------|-------------------------|------------------------------------------------------|
    | gpu       | CuPy arrays             | one fused kernel (cuda/softmax_loss.cu)              |
    | reference | ``minifcn.reference()`` | log-softmax, the true class's log p, exp of it       |
    | in place  | any other CPU input     | one array for z, exp z and the softmax (cpu/loss.py) |
    """

    def __init__(self, labels: Any, ignore_index: int = 255, reduction: str = "mean", weight: Any = None):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"softmax_cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.labels = labels.data if isinstance(labels, Tensor) else labels
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.weight = weight

    def forward(self, scores: Any) -> Any:
        xp = get_array_module(scores)
        _check_labels(scores, self.labels, self.ignore_index)
        if self.weight is not None:
            self.weight = _check_weight(scores, self.weight)
        if kernels.on_gpu(scores):  # one fused kernel: log-softmax, pick, ignore, weigh
            # Converted once here (labels to int64, scores to one block), not again in backward.
            self.labels = xp.ascontiguousarray(self.labels, dtype=np.int64)
            self.scores = xp.ascontiguousarray(scores)
            if self.weight is None:
                self.weight = xp.ones(scores.shape[1], dtype=scores.dtype)
            losses, counted = kernels.softmax_loss_forward(self.scores, self.labels, self.weight, self.ignore_index)
            routes.took(FORWARD, "gpu")
        else:
            valid = self.labels != self.ignore_index  # (N, H, W)
            target = xp.where(valid, self.labels, 0)[:, None]  # (N, 1, H, W), ignored pixels point at class 0
            if routes.use_reference():
                routes.took(FORWARD, "reference")
                log_p = _log_softmax(scores, axis=1)
                picked = xp.take_along_axis(log_p, target, axis=1)[:, 0]  # log p(true class) per pixel
                self.softmax = xp.exp(log_p)
            else:
                routes.took(FORWARD, "in place")
                self.softmax, picked = cpu_loss.forward(scores, target)
            counted = valid if self.weight is None else xp.where(valid, self.weight[target[:, 0]], 0)  # each weight
            losses = -xp.where(valid, picked, 0) * counted
            self.target, self.counted = target, counted
        count = total(counted)
        # 'mean' of no pixels (or of weight 0) is 0, not NaN: an all-void crop teaches nothing.
        self.scale = 1 / xp.where(count > 0, count, 1) if self.reduction == "mean" else xp.ones((), np.float64)
        return (total(losses) * self.scale).astype(scores.dtype)

    def backward(self, gy: Any) -> Any:
        xp = get_array_module(gy)
        scale = (self.scale * gy).astype(gy.dtype)  # a 0-d array: dL/dloss times 1 / count
        if kernels.on_gpu(gy):  # the kernel recomputes the softmax from the scores
            return kernels.softmax_loss_backward(
                self.scores, self.labels, self.weight, self.ignore_index, scale.reshape(1)
            )
        C = self.softmax.shape[1]
        classes = xp.arange(C).reshape((1, C) + (1,) * (self.softmax.ndim - 2))
        g = xp.subtract(self.softmax, classes == self.target)  # softmax - onehot (N, C, H, W): one new array
        g *= self.counted[:, None] * scale  # 0 on ignored pixels
        return g


def softmax_cross_entropy(
    scores: Tensor, labels: Any, ignore_index: int = 255, reduction: str = "mean", weight: Any = None
) -> Tensor:
    """Cross-entropy of a per-pixel softmax against integer labels.

    ``scores`` (N, C, H, W); ``labels`` (N, H, W), integers in [0, C) or
    ``ignore_index``. ``reduction='mean'`` averages over the pixels that are
    not ignored (0 when all are); ``'sum'`` sums them, the paper's loss.
    ``weight`` (C,), optional: each pixel's loss is multiplied by its class's
    weight, and 'mean' divides by the summed weights of the counted pixels,
    as ``torch.nn.functional.cross_entropy(weight=...)`` does.
    """
    return SoftmaxCrossEntropy(labels, ignore_index, reduction, weight)(scores)
