"""What each layer of a model costs: multiply-adds, bytes read and written, and the seconds it took.

    rows = layer_costs(FCN8s(21), (1, 3, 500, 500))
    print(format_costs(rows))

The counts come from the layers themselves: the model runs once, on random
input of the given shape, and every op it calls (an autograd ``Function``:
a convolution, a pooling, a ReLU, a crop, an add ...) is recorded with the
arrays it read and wrote. Each row is one call, named after the module that
made it (``conv1_1``, ``pool1``), or after the op where the model's own
``forward`` calls it between layers (the FCNs' crops and skip additions).

- **multiply-adds**: a convolution's N*OH*OW*OC*C*KH*KW (Sec. 3.1's cost of
  a layer), a transposed convolution's N*H*W*C*OC*KH*KW (the same product
  run the other way), a fully connected layer's N*IN*OUT; the other ops do
  none (a comparison, a max, an add of two maps is not a multiply-add).
- **bytes**: every input array read once and the output written once, the
  least any implementation moves; minifcn's im2col moves more (lesson 13).
- **seconds** (``forward_s``, ``backward_s``): wall clock of each call's
  forward, and with ``backward=True`` of its backward pass after ``loss``.

Run under ``no_grad`` unless ``backward`` is asked for. The model runs in
whatever mode it is in (call ``.eval()`` for inference costs).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import autograd
from .autograd import Function, Tensor
from .nn import Module


@dataclass
class LayerCost:
    """One op call of a model's forward pass, and what it cost."""

    name: str  # the module that called it (conv1_1), or the op's own name between layers (crop, add)
    op: str  # the Function: Conv2d, MaxPool2d, ReLU, Crop, Add, ...
    output: tuple
    multiply_adds: int
    bytes_read: int
    bytes_written: int
    forward_s: float = 0.0
    backward_s: float = 0.0

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


def op_multiply_adds(op: str, inputs: list[Any], output: Any) -> int:
    """The multiply-adds of one call of Function ``op`` on arrays ``inputs`` giving ``output``."""
    if op == "Conv2d":  # y (N, OC, OH, OW); w (OC, C, KH, KW)
        return int(np.prod(output.shape) * np.prod(inputs[1].shape[1:]))
    if op == "ConvTranspose2d":  # x (N, C, H, W); w (C, OC, KH, KW): each input pixel scatters C*OC*KH*KW products
        return int(np.prod(inputs[0].shape) * np.prod(inputs[1].shape[1:]))
    if op == "Linear":  # x (N, IN); w (OUT, IN)
        return int(inputs[0].shape[0] * np.prod(inputs[1].shape))
    return 0


def layer_costs(
    model: Module | Callable,
    input_shape: tuple[int, ...],
    dtype: Any = None,
    loss: Callable[[Tensor], Tensor] | None = None,
    backward: bool = False,
    seed: int = 0,
) -> list[LayerCost]:
    """One row per op call of ``model`` on a random input of ``input_shape``, in the order they ran.

    ``dtype`` is the input's (default: that of the model's parameters); ``loss``, given the model's output,
    adds its own ops (the softmax loss) under the name ``loss``; ``backward=True`` then runs the backward
    pass too and times each op's share of it.
    """
    if dtype is None:
        first = next(model.parameters(), None) if isinstance(model, Module) else None
        dtype = np.float32 if first is None else first.dtype
    x = Tensor(np.random.default_rng(seed).standard_normal(input_shape).astype(dtype), requires_grad=False)
    rows: list[LayerCost] = []
    where = ["model"]  # the innermost module running
    restore_modules = _name_the_layers(model, where)
    restore_ops = _record_the_ops(rows, where, backward)
    try:
        with contextlib.nullcontext() if backward else autograd.no_grad():
            out = model(x)
            if loss is not None:
                where.append("loss")  # the loss's ops are named after it
                value = loss(out)
                if backward:
                    value.backward()
    finally:
        restore_ops()
        restore_modules()
    return rows


def _name_the_layers(model: Module | Callable, where: list[str]) -> Callable[[], None]:
    """Make each leaf module push its name on ``where`` while it runs; returns what undoes it."""
    modules = dict(model.named_modules()) if isinstance(model, Module) else {}
    originals = {}
    for name, module in modules.items():
        if name and not module._modules:  # a leaf: a layer
            originals[name] = module.__dict__.get("forward")

            def entered(*args: Any, _name: str = name, _module: Module = module, **kwargs: Any) -> Any:
                where.append(_name)
                try:
                    return type(_module).forward(_module, *args, **kwargs)
                finally:
                    where.pop()

            module.forward = entered

    def restore() -> None:
        for name, original in originals.items():
            if original is None:
                del modules[name].forward
            else:
                modules[name].forward = original

    return restore


def _record_the_ops(rows: list[LayerCost], where: list[str], backward: bool) -> Callable[[], None]:
    """Make every Function call add a row to ``rows`` (and, with ``backward``, time its backward pass into
    that row); returns what undoes it."""
    call, back, of_call = Function.__call__, {}, {}  # of_call: id(Function instance) -> its row

    def recorded_call(self: Function, *inputs: Any) -> Any:
        arrays = [t.data if isinstance(t, Tensor) else np.asarray(t) for t in inputs]
        start = time.perf_counter()
        out = call(self, *inputs)
        seconds = time.perf_counter() - start
        outs = out if isinstance(out, tuple) else (out,)
        op = type(self).__name__
        name = where[-1] if where[-1] != "model" else op.lower()
        multiply_adds = op_multiply_adds(op, arrays, outs[0].data)
        read, written = int(sum(a.nbytes for a in arrays)), int(sum(o.data.nbytes for o in outs))
        row = LayerCost(name, op, tuple(outs[0].shape), multiply_adds, read, written, seconds)
        rows.append(row)
        of_call[id(self)] = row
        if backward and type(self) not in back:
            back[type(self)] = type(self).__dict__.get("backward")  # None: inherited, to be deleted after

            def timed_backward(fn: Function, *grads: Any, _original: Callable = type(self).backward) -> Any:
                start = time.perf_counter()
                result = _original(fn, *grads)
                if id(fn) in of_call:
                    of_call[id(fn)].backward_s += time.perf_counter() - start
                return result

            type(self).backward = timed_backward
        return out

    Function.__call__ = recorded_call

    def restore() -> None:
        Function.__call__ = call
        for cls, original in back.items():
            if original is None:
                del cls.backward
            else:
                cls.backward = original

    return restore


def format_costs(rows: list[LayerCost]) -> str:
    """The rows as a table: name, op, output shape, M multiply-adds, MB read and written, ms forward."""
    lines = [f"{'layer':<16}{'op':<18}{'output':<22}{'M mult-adds':>12}{'MB read':>10}{'MB written':>11}{'ms':>8}"]
    for r in rows:
        lines.append(
            f"{r.name:<16}{r.op:<18}{str(r.output):<22}{r.multiply_adds / 1e6:>12.1f}"
            f"{r.bytes_read / 2**20:>10.1f}{r.bytes_written / 2**20:>11.1f}{r.forward_s * 1e3:>8.1f}"
        )
    return "\n".join(lines)


__all__ = ["LayerCost", "layer_costs", "op_multiply_adds", "format_costs"]
