"""Element-wise and structural ops: add, mul, sum, relu, dropout, crop, concat.

minifcn never broadcasts silently: ``add`` and ``mul`` take two tensors of
one shape, or a tensor and a Python number.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

from .. import rng
from ..autograd import Function, Tensor
from ..backend import get_array_module
from . import routes
from .cpu import relu as cpu_relu
from .geometry import pair
from .reduce import total


def _check_same(op: str, a: Any, b: Any) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} differ (minifcn does not broadcast)")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: dtypes {a.dtype} and {b.dtype} differ (minifcn does not cast)")


class Add(Function):
    """y = a + b for arrays of one shape. Backward: dy goes to both."""

    def forward(self, a: Any, b: Any) -> Any:
        _check_same("add", a, b)
        return a + b

    def backward(self, gy: Any) -> tuple:
        return gy, gy


class AddConstant(Function):
    """y = x + c for a Python number c."""

    def __init__(self, c: float):
        self.c = c

    def forward(self, x: Any) -> Any:
        return x + x.dtype.type(self.c)

    def backward(self, gy: Any) -> Any:
        return gy


class Mul(Function):
    """y = a * b element-wise. Backward: da = dy * b, db = dy * a."""

    def forward(self, a: Any, b: Any) -> Any:
        _check_same("mul", a, b)
        self.a, self.b = a, b
        return a * b

    def backward(self, gy: Any) -> tuple:
        return gy * self.b, gy * self.a


class MulConstant(Function):
    """y = c * x for a Python number c (the at-once FCN-8s scales pool4 by 0.01 this way)."""

    def __init__(self, c: float):
        self.c = c

    def forward(self, x: Any) -> Any:
        return x * x.dtype.type(self.c)

    def backward(self, gy: Any) -> Any:
        return gy * gy.dtype.type(self.c)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def add(a: Any, b: Any) -> Tensor:
    """a + b: two tensors of one shape and dtype, or a tensor and a Python number."""
    if _is_number(b):
        return AddConstant(float(b))(a)
    if _is_number(a):
        return AddConstant(float(a))(b)
    return Add()(a, b)


def mul(a: Any, b: Any) -> Tensor:
    """a * b element-wise: two tensors of one shape and dtype, or a tensor and a Python number."""
    if _is_number(b):
        return MulConstant(float(b))(a)
    if _is_number(a):
        return MulConstant(float(a))(b)
    return Mul()(a, b)


class Sum(Function):
    """The sum of all elements, as a 0-d array (accumulated in float64). Backward: dy copied to every element."""

    def forward(self, x: Any) -> Any:
        self.shape = x.shape
        return total(x).astype(x.dtype)

    def backward(self, gy: Any) -> Any:
        xp = get_array_module(gy)
        return xp.full(self.shape, gy, dtype=gy.dtype)


def sum(x: Tensor) -> Tensor:  # noqa: A001 - mirrors numpy.sum / torch.sum
    """Sum of all elements (a 0-d tensor)."""
    return Sum()(x)


RELU = routes.declare("relu", "reference", "zero planes")
RELU_BACKWARD = routes.declare("relu backward", "reference", "channels")


class ReLU(Function):
    """y = max(x, 0). Backward: dy where y > 0, else 0.

    ``inplace=True`` writes y over x's array, as PyTorch's ``ReLU(inplace=True)``:
    no new array for the largest maps of a net. It is safe only where nothing
    else reads x afterwards, such as the output of a convolution or a batch
    norm that feeds this ReLU alone (neither keeps its output for backward).

    Routes (both passes): the reference as written above, on a GPU too; on
    the CPU, for maps whose planes are contiguous, ``cpu/relu.py`` (planes
    against a plane of zeros, channels over the cores).
    """

    def __init__(self, inplace: bool = False):
        self.inplace = inplace

    def forward(self, x: Any) -> Any:
        if routes.use_reference() or not cpu_relu.applies(x):
            routes.took(RELU, "reference")
            self.y = get_array_module(x).maximum(x, 0, out=x if self.inplace else None)
        else:
            routes.took(RELU, "zero planes")
            self.y = cpu_relu.forward(x, self.inplace)
        return self.y

    def backward(self, gy: Any) -> Any:
        if routes.use_reference() or not cpu_relu.applies(gy):
            routes.took(RELU_BACKWARD, "reference")
            return gy * (self.y > 0)
        routes.took(RELU_BACKWARD, "channels")
        return cpu_relu.backward(gy, self.y)


def relu(x: Tensor, inplace: bool = False) -> Tensor:
    """Rectified linear unit, max(x, 0); ``inplace=True`` overwrites x's array (see :class:`ReLU`)."""
    return ReLU(inplace)(x)


class Dropout(Function):
    """Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p).

    The scaling happens in training, so evaluation needs no change (as in
    PyTorch; Caffe's dropout layer does the same). Backward applies the same mask.
    """

    def __init__(self, p: float):
        self.p = p

    def forward(self, x: Any) -> Any:
        self.mask = rng.uniform_like(x) >= self.p
        self.scale = x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask * self.scale

    def backward(self, gy: Any) -> Any:
        return gy * self.mask * self.scale


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout with drop probability ``p`` in [0, 1); the identity when not training."""
    if not (_is_number(p) and 0.0 <= p < 1.0):
        raise ValueError(f"dropout: p must be a number in [0, 1), got {p!r}")
    if not training or p == 0.0:
        return x if isinstance(x, Tensor) else Tensor(x)
    return Dropout(float(p))(x)


class Crop(Function):
    """Caffe's crop: y = x[..., oy:oy+H, ox:ox+W] over the last two axes.

    The FCNs use it to align an upsampled score map with the input (or with
    a skip's score map); the offsets come from the layer geometry.
    Backward: dy placed back into a zero array of x's shape.
    """

    def __init__(self, size: Any, offset: Any):
        self.size = pair(size, "size")
        self.offset = pair(offset, "offset")

    def forward(self, x: Any) -> Any:
        if x.ndim < 2:
            raise ValueError(f"crop: input must have at least 2 dimensions, got shape {x.shape}")
        (H, W), (oy, ox) = self.size, self.offset
        IH, IW = x.shape[-2:]
        if H < 1 or W < 1 or oy < 0 or ox < 0 or oy + H > IH or ox + W > IW:
            raise ValueError(
                f"crop: a {H}x{W} window at offset ({oy}, {ox}) does not fit in the input of shape {x.shape}"
            )
        self.x_shape = x.shape
        return x[..., oy : oy + H, ox : ox + W].copy()

    def backward(self, gy: Any) -> Any:
        xp = get_array_module(gy)
        (H, W), (oy, ox) = self.size, self.offset
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        gx[..., oy : oy + H, ox : ox + W] = gy
        return gx


def crop(x: Tensor, size: Any, offset: Any) -> Tensor:
    """Caffe's crop: ``x[..., oy:oy+H, ox:ox+W]`` with size (H, W) and offset an int or an (oy, ox) pair."""
    return Crop(size, offset)(x)


class Concat(Function):
    """Join arrays along one axis. Backward: dy split back into the inputs' extents."""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs: Any) -> Any:
        xp = get_array_module(*xs)
        first = xs[0]
        axis = self.axis % first.ndim if first.ndim else 0
        for i, x in enumerate(xs[1:], start=1):
            if (
                x.ndim != first.ndim
                or x.shape[:axis] + x.shape[axis + 1 :] != first.shape[:axis] + first.shape[axis + 1 :]
            ):
                raise ValueError(
                    f"concat: input {i} has shape {x.shape}, incompatible with {first.shape} along axis {axis}"
                )
            if x.dtype != first.dtype:
                raise TypeError(f"concat: input {i} has dtype {x.dtype}, input 0 has {first.dtype}")
        self.axis_ = axis
        self.sizes = [x.shape[axis] for x in xs]
        return xp.concatenate(xs, axis=axis)

    def backward(self, gy: Any) -> tuple:
        xp = get_array_module(gy)
        bounds = [0]
        for s in self.sizes:
            bounds.append(bounds[-1] + s)
        index = [slice(None)] * gy.ndim
        grads = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            index[self.axis_] = slice(lo, hi)
            grads.append(xp.ascontiguousarray(gy[tuple(index)]))
        return tuple(grads)


def concat(tensors: Sequence[Tensor], axis: int = 1) -> Tensor:
    """Concatenate tensors along ``axis`` (channels by default)."""
    if len(tensors) == 0:
        raise ValueError("concat: needs at least one tensor")
    return Concat(axis)(*tensors)


class Narrow(Function):
    """y = x[..., start:start + length, ...] along ``axis`` (PyTorch's narrow). Backward: dy into zeros."""

    def __init__(self, axis: int, start: int, length: int):
        self.axis, self.start, self.length = axis, start, length

    def forward(self, x: Any) -> Any:
        axis = self.axis % x.ndim
        if self.start < 0 or self.length < 1 or self.start + self.length > x.shape[axis]:
            raise ValueError(
                f"narrow: [{self.start}, {self.start + self.length}) is not inside axis {axis} of shape {x.shape}"
            )
        self.index = (slice(None),) * axis + (slice(self.start, self.start + self.length),)
        self.x_shape = x.shape
        return x[self.index].copy()

    def backward(self, gy: Any) -> Any:
        gx = get_array_module(gy).zeros(self.x_shape, dtype=gy.dtype)
        gx[self.index] = gy
        return gx


def narrow(x: Tensor, axis: int, start: int, length: int) -> Tensor:
    """``length`` entries of ``x`` along ``axis`` from ``start`` (e.g. the depth channel of an RGB-D input)."""
    return Narrow(axis, start, length)(x)


def _negate(x: Tensor) -> Tensor:
    return mul(x, -1.0)


# Tensor's arithmetic is these ops, attached once here (see autograd.Tensor).
Tensor.__add__ = Tensor.__radd__ = add
Tensor.__mul__ = Tensor.__rmul__ = mul
Tensor.__neg__ = _negate
Tensor.sum = sum
