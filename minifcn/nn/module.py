"""Module: a container of parameters and sub-modules, as in PyTorch and Chainer.

Assigning a :class:`Parameter` or a :class:`Module` to an attribute registers
it; names are dotted paths in definition order (``conv1_1.weight``), which
is also the order of ``state_dict()``. A *buffer* (``register_buffer``) is
state that is saved and moved with the module but not learnt: batch
normalisation's running mean and variance.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..backend import check_device, device_of, to_device
from .parameter import Parameter


class Module:
    """Base class of layers and networks. Subclasses define ``forward``; calling the module runs it."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_name", None)  # the attribute name it was first registered under

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        # Replacing a parameter or sub-module keeps its place in the order (and in state_dict()).
        if name in self._buffers:  # a new array for a buffer stays a buffer
            self._buffers[name] = value
        elif isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._modules[name] = value
            if value._name is None:
                object.__setattr__(value, "_name", name)
        else:
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: Any) -> None:
        """Keep ``array`` as state that is saved and moved with the module but is not a parameter."""
        if name in self._parameters or name in self._modules:
            raise ValueError(f"{type(self).__name__}: {name!r} is already a parameter or sub-module")
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def __delattr__(self, name: str) -> None:
        self._buffers.pop(name, None)
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- traversal ------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module and every sub-module, depth first, with dotted names ('' for this one)."""
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Every parameter with its dotted name, in definition order."""
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters())

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        """Every buffer (an array) with its dotted name, in definition order."""
        for prefix, module in self.named_modules():
            for name, array in module._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), array

    def _set_buffer(self, dotted: str, array: Any) -> None:
        owner = self
        *path, name = dotted.split(".")
        for part in path:
            owner = owner._modules[part]
        setattr(owner, name, array)

    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """The direct sub-modules with their names, in definition order."""
        return iter(self._modules.items())

    # -- state ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Name -> array (the parameters' data, then the buffers; not copies), in definition order."""
        state = {name: p.data for name, p in self.named_parameters()}
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays into the parameters by name, onto each parameter's device.

        Values are cast to the parameter's dtype, as PyTorch does (a float64
        checkpoint loads into a float32 model); shapes are never changed.

        With ``strict``, the keys must match exactly. Every shape must match.
        The error lists all missing and unexpected keys and all shape
        mismatches at once, and nothing is loaded when there is one.
        """
        own: dict[str, Any] = dict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [
            f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
            for k in own
            if k in state and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if mismatched:
            problems.append(f"shape mismatches: {mismatched}")
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for name, p in own.items():
            if name not in state:
                continue
            if isinstance(p, Parameter):
                p.data = to_device(state[name], p.device).astype(p.dtype, copy=True)
            else:  # a buffer
                self._set_buffer(name, to_device(state[name], device_of(p)).astype(p.dtype, copy=True))

    # -- modes and devices ------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active, batch norm on batch statistics) for this module and all sub-modules."""
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (dropout off, batch norm on its running statistics)."""
        return self.train(False)

    def to(self, device: str) -> "Module":
        """Move every parameter (and its gradient) and buffer to ``device``, in place; returns self."""
        device = check_device(device)
        for p in self.parameters():
            p.data = to_device(p.data, device)
            if p.grad is not None:
                p.grad = to_device(p.grad, device)
        for name, array in list(self.named_buffers()):
            self._set_buffer(name, to_device(array, device))
        return self

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # -- display ------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def label(self) -> str:
        """How errors name this layer: its attribute name and configuration, e.g. 'conv1_1 = Conv2d(3, 64, ...)'."""
        described = f"{type(self).__name__}({self.extra_repr()})"
        return f"{self._name} = {described}" if self._name else described

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return "\n".join(lines) + "\n)"
