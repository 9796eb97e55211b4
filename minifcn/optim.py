"""Optimisers: SGD with momentum, as Caffe's SGD solver (the paper trains with it), and Adam.

SGD, for each parameter w with gradient g, learning rate lr and weight decay
wd, scaled by the parameter's ``lr_mult`` and ``decay_mult``:

    v <- momentum * v + lr * lr_mult * (g + wd * decay_mult * w)
    w <- w - v

This is Caffe's form (the learning rate inside the momentum buffer). It
equals PyTorch's form (lr outside) while lr stays constant, which it does in
the paper's runs. Parameters with lr_mult 0 (the fixed bilinear upsampling)
are left untouched.

The momentum buffers live on each parameter's device: create the optimiser
after ``model.to(device)``, as in PyTorch.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .backend import get_array_module, to_device
from .nn.parameter import Parameter


def _parameter_list(optimiser: str, params: Iterable[Parameter]) -> list[Parameter]:
    """``params`` as a list, checked: not empty, and every item a Parameter (with lr_mult and decay_mult)."""
    params = list(params)
    if not params:
        raise ValueError(f"{optimiser}: got an empty list of parameters")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{optimiser}: parameter {i} is a {type(p).__name__}, expected a minifcn.nn.Parameter")
    return params


class SGD:
    """SGD with momentum and weight decay, honouring each parameter's lr_mult and decay_mult."""

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        self.params = _parameter_list("SGD", params)
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"SGD: need lr >= 0, 0 <= momentum < 1, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient and a non-zero lr_mult."""
        for i, p in enumerate(self.params):
            if p.grad is None or p.lr_mult == 0:
                continue
            xp = get_array_module(p.data)
            g = p.grad
            decay = self.weight_decay * p.decay_mult
            if decay:
                g = g + p.data.dtype.type(decay) * p.data
            v = self.velocity[i]
            if v is None:
                v = self.velocity[i] = xp.zeros_like(p.data)
            v *= p.data.dtype.type(self.momentum)
            v += p.data.dtype.type(self.lr * p.lr_mult) * g
            p.data -= v

    def state_dict(self) -> dict[str, Any]:
        """The momentum buffers (host arrays, zeros where none was made yet) and hyper-parameters."""
        state: dict[str, Any] = {"lr": np.asarray(self.lr), "momentum": np.asarray(self.momentum),
                                 "weight_decay": np.asarray(self.weight_decay)}  # fmt: skip
        for i, (p, v) in enumerate(zip(self.params, self.velocity)):
            state[f"velocity.{i}"] = np.zeros(p.shape, p.dtype) if v is None else to_device(v, "cpu")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, onto each parameter's device."""
        missing = [k for k in ("lr", "momentum", "weight_decay") if k not in state]
        if missing:
            raise ValueError(f"SGD.load_state_dict: the state lacks {missing}; was it written by SGD.state_dict()?")
        for i, p in enumerate(self.params):
            key = f"velocity.{i}"
            if key not in state:
                raise ValueError(f"SGD.load_state_dict: no {key!r}; the state has {len(self.params)} parameters?")
            if tuple(state[key].shape) != p.shape:
                raise ValueError(f"SGD.load_state_dict: {key} has shape {tuple(state[key].shape)}, parameter {p.shape}")
            self.velocity[i] = to_device(np.asarray(state[key], dtype=p.dtype), p.device).copy()
        self.lr = float(state["lr"])
        self.momentum = float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])


class Adam:
    """Adam (Kingma and Ba, 2015), as PyTorch's torch.optim.Adam; not the paper's solver, but it makes the
    quick preset learn from scratch in minutes.

    For each parameter w with gradient g, at step t:

        g <- g + wd * decay_mult * w                       (L2 weight decay, as PyTorch's Adam)
        m <- beta1 * m + (1 - beta1) * g                   running mean of g
        v <- beta2 * v + (1 - beta2) * g^2                 running mean of g^2
        w <- w - lr * lr_mult * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    The two divisions undo the bias of m and v towards their zero start.
    Parameters with lr_mult 0 are left untouched. Create it after
    ``model.to(device)``.
    """

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):  # fmt: skip
        self.params = _parameter_list("Adam", params)
        if lr < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or eps <= 0 or weight_decay < 0:
            raise ValueError(f"Adam: need lr >= 0, betas in [0, 1), eps > 0, weight_decay >= 0; "
                             f"got {lr}, {betas}, {eps}, {weight_decay}")  # fmt: skip
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), (float(betas[0]), float(betas[1])), eps, weight_decay
        self.t = 0
        self.m: list[Any] = [None] * len(self.params)
        self.v: list[Any] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient and a non-zero lr_mult."""
        self.t += 1
        b1, b2 = self.betas
        correction1, correction2 = 1 - b1**self.t, 1 - b2**self.t
        for i, p in enumerate(self.params):
            if p.grad is None or p.lr_mult == 0:
                continue
            xp = get_array_module(p.data)
            f = p.data.dtype.type
            g = p.grad
            decay = self.weight_decay * p.decay_mult
            if decay:
                g = g + f(decay) * p.data
            if self.m[i] is None:
                self.m[i], self.v[i] = xp.zeros_like(p.data), xp.zeros_like(p.data)
            m, v = self.m[i], self.v[i]
            m *= f(b1)
            m += f(1 - b1) * g
            v *= f(b2)
            v += f(1 - b2) * (g * g)
            denominator = xp.sqrt(v / f(correction2)) + f(self.eps)
            p.data -= f(self.lr * p.lr_mult / correction1) * m / denominator

    def state_dict(self) -> dict[str, Any]:
        """The moment estimates (host arrays, zeros where none was made yet), the step count, hyper-parameters."""
        state: dict[str, Any] = {"lr": np.asarray(self.lr), "betas": np.asarray(self.betas), "eps": np.asarray(self.eps),
                                 "weight_decay": np.asarray(self.weight_decay), "t": np.asarray(self.t)}  # fmt: skip
        for i, p in enumerate(self.params):
            for name, moments in (("m", self.m), ("v", self.v)):
                a = moments[i]
                state[f"{name}.{i}"] = np.zeros(p.shape, p.dtype) if a is None else to_device(a, "cpu")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, onto each parameter's device."""
        missing = [k for k in ("lr", "betas", "eps", "weight_decay", "t") if k not in state]
        if missing:
            raise ValueError(f"Adam.load_state_dict: the state lacks {missing}; was it written by Adam.state_dict()?")
        for i, p in enumerate(self.params):
            for name, moments in (("m", self.m), ("v", self.v)):
                key = f"{name}.{i}"
                if key not in state:
                    raise ValueError(f"Adam.load_state_dict: no {key!r}; the state has {len(self.params)} parameters?")
                if tuple(state[key].shape) != p.shape:
                    raise ValueError(f"Adam.load_state_dict: {key} has shape {tuple(state[key].shape)}, parameter {p.shape}")
                moments[i] = to_device(np.asarray(state[key], dtype=p.dtype), p.device).copy()
        self.lr, self.eps, self.weight_decay = float(state["lr"]), float(state["eps"]), float(state["weight_decay"])
        self.betas = (float(state["betas"][0]), float(state["betas"][1]))
        self.t = int(state["t"])
