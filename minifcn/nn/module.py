"""Module: a container of parameters and sub-modules, as in PyTorch and Chainer.

Assigning a :class:`Parameter` or a :class:`Module` to an attribute registers
it; names are dotted paths in definition order (``conv1_1.weight``), which
is also the order of ``state_dict()``.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..backend import check_device, to_device
from .parameter import Parameter


class Module:
    """Base class of layers and networks. Subclasses define ``forward``; calling the module runs it."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_name", None)  # the attribute name it was first registered under

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        # Replacing a parameter or sub-module keeps its place in the order (and in state_dict()).
        if isinstance(value, Parameter):
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

    def __delattr__(self, name: str) -> None:
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

    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    # -- state ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Name -> array (the parameters' data, not copies), in definition order."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays into the parameters by name, onto each parameter's device.

        Values are cast to the parameter's dtype, as PyTorch does (a float64
        checkpoint loads into a float32 model); shapes are never changed.

        With ``strict``, the keys must match exactly. Every shape must match.
        The error lists all missing and unexpected keys and all shape
        mismatches at once, and nothing is loaded when there is one.
        """
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [
            f"{k}: checkpoint {tuple(state[k].shape)}, model {own[k].shape}"
            for k in own
            if k in state and tuple(state[k].shape) != own[k].shape
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
            if name in state:
                value = to_device(state[name], p.device)
                p.data = value.astype(p.dtype, copy=True)

    # -- modes and devices ------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active) for this module and all sub-modules."""
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (dropout off)."""
        return self.train(False)

    def to(self, device: str) -> "Module":
        """Move every parameter (and its gradient) to ``device``, in place; returns self."""
        device = check_device(device)
        for p in self.parameters():
            p.data = to_device(p.data, device)
            if p.grad is not None:
                p.grad = to_device(p.grad, device)
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
