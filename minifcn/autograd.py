"""A small reverse-mode autograd: Tensor, Function, no_grad.

A :class:`Function` computes on raw arrays (NumPy or CuPy): ``forward`` takes
arrays and returns an array (or a tuple of arrays), ``backward`` takes the
gradient of each output and returns one gradient per input (None where an
input needs none). It keeps on ``self`` only what its backward needs.

Calling a Function on Tensors runs ``forward`` and, unless gradients are off
(:func:`no_grad`) or no input requires one, records the Function as the
creator of its outputs. That record is the graph. :meth:`Tensor.backward`
sorts the Functions in reverse topological order, calls each ``backward`` once
all gradients of its outputs have been summed, accumulates into the ``.grad``
of the leaves, and then frees the graph.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import numpy as np

from .backend import check_device, device_of, get_array_module, to_device

# ---------------------------------------------------------------------------
# Gradient mode


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """False inside a ``no_grad()`` block."""
    return _GradMode.enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager (or decorator) that records no graph: for inference and updates."""

    def __enter__(self) -> "no_grad":
        self._previous = _GradMode.enabled
        _GradMode.enabled = False
        return self

    def __exit__(self, *exc: Any) -> None:
        _GradMode.enabled = self._previous


# Marks the outputs of a Function whose graph has been freed by backward().
_FREED = object()


# ---------------------------------------------------------------------------
# Tensor


def _is_array(a: Any) -> bool:
    return isinstance(a, np.ndarray) or device_of(a) == "cuda"


class Tensor:
    """An array (``.data``) with an optional gradient (``.grad``) and its creator.

    ``data`` is a ``numpy.ndarray`` or a ``cupy.ndarray``; it is kept as it is
    (no copy, no cast). ``grad`` stays None until a backward pass reaches the
    tensor, and then has ``data``'s shape, dtype and array kind.
    """

    # Make ``ndarray * Tensor`` call Tensor.__rmul__ instead of broadcasting
    # the ndarray over a 0-d object array.
    __array_priority__ = 1000

    def __init__(self, data: Any, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            raise TypeError("Tensor(data): data is already a Tensor; use tensor.data or tensor.detach()")
        if isinstance(data, np.generic):
            data = np.asarray(data)
        if not _is_array(data):
            raise TypeError(
                f"Tensor(data): expected a numpy.ndarray or cupy.ndarray, got {type(data).__name__}; "
                "wrap it with numpy.asarray(data, dtype=numpy.float32) first"
            )
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self.grad: Any = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._creator: Any = None  # the Function that made this tensor, or _FREED

    # -- array-like attributes ------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        """'cpu' or 'cuda'."""
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._creator is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        extra = ", requires_grad=True" if self.requires_grad else ""
        name = f", name={self.name!r}" if self.name else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device!r}{extra}{name})"

    # -- conversions ------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied to the host if it lives on the GPU)."""
        return to_device(self.data, "cpu")

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def to(self, device: str) -> "Tensor":
        """This tensor's data on ``device`` ('cpu' or 'cuda'), as a new leaf.

        Returns ``self`` when the data is already there. The copy is not part
        of the graph: move inputs and parameters before the forward pass.
        """
        if check_device(device) == self.device:
            return self
        return Tensor(to_device(self.data, device), requires_grad=self.requires_grad, name=self.name)

    def detach(self) -> "Tensor":
        """A new leaf sharing this tensor's data, outside any graph."""
        return Tensor(self.data, name=self.name)

    def zero_grad(self) -> None:
        self.grad = None

    # -- operators: a + b, a * b and -a, a.sum() are ops with backward passes (functional.basic), which
    # attaches them to Tensor once, when the package is imported, as DeZero does; so this module needs
    # nothing from the ops built on it. The rest are written with those three.
    def __sub__(self, other: Any) -> "Tensor":
        return self + (-other)

    def __rsub__(self, other: Any) -> "Tensor":
        return (-self) + other

    def __truediv__(self, other: Any) -> "Tensor":
        if not isinstance(other, (int, float)):
            raise TypeError("Tensor / x is defined for a Python number x only")
        return self * (1.0 / other)

    # -- backward -------------------------------------------------------------
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Back-propagate from this tensor into the ``.grad`` of every leaf that requires one.

        ``grad`` is d(objective)/d(self): omitted for a one-element tensor
        (it is then 1), otherwise an array of this tensor's shape. Gradients
        add up in ``.grad`` across calls, as in PyTorch: zero them between
        steps. The graph is freed afterwards unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (was it made under no_grad?)")
        xp = get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward() without a gradient needs a one-element tensor, got shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            if isinstance(grad, Tensor):
                grad = grad.data
            if not _is_array(grad) or grad.shape != self.shape:
                raise ValueError(
                    f"backward(grad): grad must be an array of shape {self.shape}, got "
                    f"{getattr(grad, 'shape', type(grad).__name__)}"
                )
            if device_of(grad) != self.device:
                raise ValueError(f"backward(grad): grad is on {device_of(grad)}, the tensor on {self.device}")
            grad = grad.astype(self.dtype, copy=False)
        _run_backward(self, grad, retain_graph)


# ---------------------------------------------------------------------------
# Function


class Function:
    """Base class of every differentiable op.

    Subclasses implement ``forward(*arrays)`` and ``backward(*grad_outputs)``
    on raw arrays. Hyper-parameters go to ``__init__``; whatever backward
    needs is stored on ``self`` during forward.
    """

    def forward(self, *arrays: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def input_needs_grad(self, i: int) -> bool:
        """Whether input ``i`` will need a gradient, so that forward can skip what only backward uses
        (True when forward is called by hand, outside ``__call__``)."""
        flags = self.__dict__.get("needs_input_grad")
        return True if flags is None else flags[i]

    def backward(self, *grad_outputs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *inputs: Any) -> Any:
        tensors = tuple(x if isinstance(x, Tensor) else Tensor(_as_array(x, type(self).__name__)) for x in inputs)
        devices = {t.device for t in tensors}
        if len(devices) > 1:
            where = ", ".join(f"input {i} on {t.device}" for i, t in enumerate(tensors))
            raise ValueError(f"{type(self).__name__}: inputs are on different devices ({where}); move them with .to()")
        # Which inputs need a gradient, so that backward can skip the others
        # (the image entering conv1_1 needs none, and its dX is the largest).
        self.needs_input_grad = tuple(t.requires_grad and _GradMode.enabled for t in tensors)
        outputs = self.forward(*(t.data for t in tensors))
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)
        needs_grad = _GradMode.enabled and any(t.requires_grad for t in tensors)
        results = tuple(Tensor(y, requires_grad=needs_grad) for y in outputs)
        if needs_grad:
            self.inputs = tensors
            # Weak references: the graph must not keep outputs alive by itself.
            self.outputs = tuple(weakref.ref(y) for y in results)
            self.output_meta = tuple((y.shape, y.dtype) for y in results)
            for y in results:
                y._creator = self
        return results[0] if single else results


def _as_array(x: Any, fn_name: str) -> Any:
    if _is_array(x):
        return x
    raise TypeError(f"{fn_name}: expected a Tensor or an array, got {type(x).__name__}")


def _topological_functions(root: Tensor) -> list:
    """Functions reachable from ``root``'s creator, each after all that feed it."""
    order: list = []
    visited: set = set()
    stack: list = [(root._creator, False)]
    while stack:  # iterative depth-first search: deep nets do not hit the recursion limit
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        stack.append((fn, True))
        for x in fn.inputs:
            if x._creator is _FREED:
                raise RuntimeError(
                    "backward() through a graph that an earlier backward() already freed; "
                    "pass retain_graph=True to the first backward() to go through it twice"
                )
            if x._creator is not None and id(x._creator) not in visited:
                stack.append((x._creator, False))
    return order


def _run_backward(root: Tensor, grad: Any, retain_graph: bool) -> None:
    if root._creator is _FREED:
        raise RuntimeError(
            "backward() through a graph that an earlier backward() already freed; "
            "pass retain_graph=True to the first backward() to go through it twice"
        )
    if root._creator is None:  # a leaf: its gradient is the seed itself
        root.grad = grad if root.grad is None else root.grad + grad
        return

    # grads[id(t)] = (t, sum of the gradients that reached t so far)
    grads: dict = {id(root): (root, grad)}
    for fn in reversed(_topological_functions(root)):
        outs = [ref() for ref in fn.outputs]
        gys = [grads.pop(id(y), (None, None))[1] if y is not None else None for y in outs]
        if all(g is None for g in gys):
            continue  # no path from here to root
        if any(g is None for g in gys):  # a multi-output function, some outputs unused
            xp = get_array_module(*[g for g in gys if g is not None])
            gys = [xp.zeros(shape, dtype) if g is None else g for (shape, dtype), g in zip(fn.output_meta, gys)]
        gxs = fn.backward(*gys)
        if not isinstance(gxs, tuple):
            gxs = (gxs,)
        if len(gxs) != len(fn.inputs):
            raise RuntimeError(
                f"{type(fn).__name__}.backward returned {len(gxs)} gradients for {len(fn.inputs)} inputs"
            )
        for x, gx in zip(fn.inputs, gxs):
            if gx is None or not x.requires_grad:
                continue
            if gx.shape != x.shape:
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned a gradient of shape {gx.shape} "
                    f"for an input of shape {x.shape}"
                )
            gx = gx.astype(x.dtype, copy=False)
            # Out-of-place sums: a backward may return the very array it was given.
            if x._creator is None:
                x.grad = gx if x.grad is None else x.grad + gx
            else:
                _, prev = grads.get(id(x), (None, None))
                grads[id(x)] = (x, gx if prev is None else prev + gx)
        if not retain_graph:
            for y in outs:
                if y is not None:
                    y._creator = _FREED
            fn.__dict__.clear()  # drops inputs and every array saved for backward
