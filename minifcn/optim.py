"""Optimisers: SGD with momentum, as Caffe's SGD solver (the paper trains with it), and Adam.

SGD, for each parameter w with gradient g, learning rate lr and weight decay
wd, scaled by the parameter's ``lr_mult`` and ``decay_mult``:

    v <- momentum * v + lr * lr_mult * (g + wd * decay_mult * w)
    w <- w - v

This is Caffe's form (the learning rate inside the momentum buffer). It
equals PyTorch's form (lr outside) while lr stays constant, which it does in
the paper's runs. Parameters with lr_mult 0 (the fixed bilinear upsampling)
are left untouched.

One update for many parameters: the parameters that share a dtype, a
device, an lr_mult and a decay_mult (an FCN has two such kinds: weights at
(1, 1), biases at (2, 0)) are laid end to end in one flat buffer, and each
parameter's ``.data`` becomes a view of its piece (as Chainer and Apex do).
Their gradients are gathered into one flat array (one copy), and the update
is a handful of array operations on the whole buffer instead of a handful per
parameter; on a GPU, one kernel (cuda/optim.cu), so a step of an FCN's
optimiser is four launches (two gathers of gradients, two updates) instead of
~10 per parameter. The numbers are those of the update written per
parameter, element for element.
A parameter whose ``.data`` is replaced afterwards (``load_state_dict``,
``Module.to``) is noticed at the next step and copied into the buffer again.

The state (momentum, Adam's moments) lives on the parameters' device: create
the optimiser after ``model.to(device)``, as in PyTorch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from .backend import get_array_module, to_device
from .cuda import kernels
from .functional.cpu import threads
from .nn.parameter import Parameter

#: On the CPU an update goes through its buffer this many elements at a time (each thread through its own
#: range), so that the rule's temporaries stay in the cache and never grow with the net (docs/performance.md).
UPDATE_CHUNK = 2**17


def _parameter_list(optimiser: str, params: Iterable[Parameter]) -> list[Parameter]:
    """``params`` as a list, checked: not empty, and every item a Parameter (with lr_mult and decay_mult)."""
    params = list(params)
    if not params:
        raise ValueError(f"{optimiser}: got an empty list of parameters")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{optimiser}: parameter {i} is a {type(p).__name__}, expected a minifcn.nn.Parameter")
    return params


class _FlatGroup:
    """Parameters of one kind (dtype, device, lr_mult, decay_mult) as views of one flat buffer.

    ``state`` holds the optimiser's flat arrays (one per name, e.g. "velocity"),
    made at the first step; ``piece(array, k)`` is parameter k's part of a
    flat array, shaped like the parameter.
    """

    def __init__(self, indices: list[int], params: list[Parameter]):
        self.indices, self.params = indices, params
        self.lr_mult, self.decay_mult = params[0].lr_mult, params[0].decay_mult
        self.shapes = [p.shape for p in params]
        self.bounds, start = [], 0
        for p in params:
            self.bounds.append((start, start + p.data.size))
            start += p.data.size
        self.state: dict[str, Any] = {}
        self.attach()

    def attach(self) -> None:
        """Copy the parameters' current arrays into a new buffer, and make their ``.data`` views of it."""
        for i, p, shape in zip(self.indices, self.params, self.shapes):
            if p.shape != shape:
                raise ValueError(
                    f"optimiser: parameter {i} changed shape from {shape} to {p.shape} after the "
                    "optimiser was made; make the optimiser again"
                )
        xp = get_array_module(self.params[0].data)
        self.data = xp.empty(self.bounds[-1][1], dtype=self.params[0].data.dtype)
        for k, p in enumerate(self.params):
            self.data[slice(*self.bounds[k])] = p.data.ravel()
            p.data = self.piece(self.data, k)
        self.views = [p.data for p in self.params]
        device = "cuda" if xp is not np else "cpu"
        self.state = {name: to_device(a, device) for name, a in self.state.items()}

    def check_attached(self) -> None:
        """Re-attach when a parameter's ``.data`` was replaced since (a loaded state, another device)."""
        if any(p.data is not view for p, view in zip(self.params, self.views)):
            self.attach()

    def piece(self, flat: Any, k: int) -> Any:
        return flat[slice(*self.bounds[k])].reshape(self.params[k].shape)

    def flat_gradient(self) -> Any:
        """Every gradient end to end (one copy), or None when some parameter has none this step."""
        if any(p.grad is None for p in self.params):
            return None
        return get_array_module(self.data).concatenate([p.grad.ravel() for p in self.params])

    def update(self, rule: Callable[..., None], state_names: tuple[str, ...]) -> None:
        """Apply ``rule(w, g, *state)`` to the whole buffer, or piece by piece to the parameters with a gradient."""
        self.check_attached()
        xp = get_array_module(self.data)
        for name in state_names:
            if name not in self.state:
                self.state[name] = xp.zeros_like(self.data)
        g = self.flat_gradient()
        if g is not None:
            arrays = (self.data, g, *(self.state[name] for name in state_names))
            if kernels.on_gpu(self.data):  # one launch for the whole buffer
                rule(*arrays)
                return

            # An elementwise rule: on the CPU, each thread updates its own range of the buffer, a chunk at a time.
            def elements(i0: int, i1: int) -> None:
                for j in range(i0, i1, UPDATE_CHUNK):
                    rule(*(a[j : min(j + UPDATE_CHUNK, i1)] for a in arrays))

            threads.by_channels(elements, g.size, g.nbytes)
            return
        for k, p in enumerate(self.params):  # rare: a parameter without a gradient keeps its value and state
            if p.grad is not None:
                rule(self.piece(self.data, k), p.grad, *(self.piece(self.state[name], k) for name in state_names))


def _groups(params: list[Parameter]) -> list[_FlatGroup]:
    """The learnable parameters (lr_mult > 0) grouped by dtype, device, lr_mult and decay_mult, in order."""
    kinds: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        if p.lr_mult != 0:
            kinds.setdefault((p.data.dtype.str, p.device, p.lr_mult, p.decay_mult), []).append(i)
    return [_FlatGroup(indices, [params[i] for i in indices]) for indices in kinds.values()]


class _Optimiser:
    """What SGD and Adam share: the flat groups, zero_grad, and the per-parameter state in checkpoints."""

    name = "optimiser"
    state_names: tuple[str, ...] = ()
    hyper: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter]):
        self.params = _parameter_list(type(self).__name__, params)
        self.groups = _groups(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _state_of(self, i: int, name: str) -> Any:
        """Parameter i's piece of the flat state ``name`` (a host array), zeros before the first step."""
        p = self.params[i]
        for group in self.groups:
            if i in group.indices and name in group.state:
                return to_device(group.piece(group.state[name], group.indices.index(i)), "cpu").copy()
        return np.zeros(p.shape, p.dtype)

    def _per_parameter_state(self) -> dict[str, Any]:
        return {f"{name}.{i}": self._state_of(i, name) for name in self.state_names for i in range(len(self.params))}

    def _load_per_parameter_state(self, state: dict[str, Any]) -> None:
        """Check every ``<name>.<i>`` of ``state``, then copy it into the flat state, on the parameters' device."""
        label = type(self).__name__
        missing = [k for k in self.hyper if k not in state]
        if missing:
            raise ValueError(
                f"{label}.load_state_dict: the state lacks {missing}; was it written by {label}.state_dict()?"
            )
        for name in self.state_names:
            for i, p in enumerate(self.params):
                key = f"{name}.{i}"
                if key not in state:
                    raise ValueError(
                        f"{label}.load_state_dict: no {key!r}; the state has {len(self.params)} parameters?"
                    )
                if tuple(state[key].shape) != p.shape:
                    raise ValueError(
                        f"{label}.load_state_dict: {key} has shape {tuple(state[key].shape)}, parameter {p.shape}"
                    )
        for group in self.groups:
            group.check_attached()
            device = "cpu" if get_array_module(group.data) is np else "cuda"
            for name in self.state_names:
                flat = np.concatenate(
                    [np.asarray(state[f"{name}.{i}"], dtype=group.data.dtype).ravel() for i in group.indices]
                )
                group.state[name] = to_device(flat, device)


class SGD(_Optimiser):
    """SGD with momentum and weight decay, honouring each parameter's lr_mult and decay_mult."""

    state_names = ("velocity",)
    hyper = ("lr", "momentum", "weight_decay")

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(
                f"SGD: need lr >= 0, 0 <= momentum < 1, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}"
            )
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)

    def step(self) -> None:
        """One update of every parameter that has a gradient and a non-zero lr_mult."""
        for group in self.groups:
            f = group.data.dtype.type
            decay, momentum, rate = (
                f(self.weight_decay * group.decay_mult),
                f(self.momentum),
                f(self.lr * group.lr_mult),
            )

            def rule(w: Any, g: Any, v: Any) -> None:
                if kernels.on_gpu(w):  # the same arithmetic in one kernel (cuda/optim.cu)
                    kernels.sgd_update(w, g, v, rate, momentum, decay)
                    return
                if decay:
                    g = g + decay * w
                v *= momentum
                v += rate * g
                w -= v

            group.update(rule, self.state_names)

    def state_dict(self) -> dict[str, Any]:
        """The momentum buffers (host arrays, zeros where none was made yet) and hyper-parameters."""
        state: dict[str, Any] = {
            "lr": np.asarray(self.lr),
            "momentum": np.asarray(self.momentum),
            "weight_decay": np.asarray(self.weight_decay),
        }
        return state | self._per_parameter_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, onto each parameter's device."""
        self._load_per_parameter_state(state)
        self.lr = float(state["lr"])
        self.momentum = float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])


class Adam(_Optimiser):
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

    state_names = ("m", "v")
    hyper = ("lr", "betas", "eps", "weight_decay", "t")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if lr < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or eps <= 0 or weight_decay < 0:
            raise ValueError(
                f"Adam: need lr >= 0, betas in [0, 1), eps > 0, weight_decay >= 0; "
                f"got {lr}, {betas}, {eps}, {weight_decay}"
            )
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = (
            float(lr),
            (float(betas[0]), float(betas[1])),
            eps,
            weight_decay,
        )
        self.t = 0

    def step(self) -> None:
        """One update of every parameter that has a gradient and a non-zero lr_mult."""
        self.t += 1
        b1, b2 = self.betas
        correction1, correction2 = 1 - b1**self.t, 1 - b2**self.t
        for group in self.groups:
            xp, f = get_array_module(group.data), group.data.dtype.type
            decay, rate = f(self.weight_decay * group.decay_mult), f(self.lr * group.lr_mult / correction1)

            def rule(w: Any, g: Any, m: Any, v: Any) -> None:
                if kernels.on_gpu(w):  # the same arithmetic in one kernel (cuda/optim.cu)
                    kernels.adam_update(w, g, m, v, rate, (b1, b2), correction2, self.eps, decay)
                    return
                if decay:
                    g = g + decay * w
                m *= f(b1)
                m += f(1 - b1) * g
                v *= f(b2)
                v += f(1 - b2) * (g * g)
                denominator = xp.sqrt(v / f(correction2)) + f(self.eps)
                w -= rate * m / denominator

            group.update(rule, self.state_names)

    def state_dict(self) -> dict[str, Any]:
        """The moment estimates (host arrays, zeros where none was made yet), the step count, hyper-parameters."""
        state: dict[str, Any] = {
            "lr": np.asarray(self.lr),
            "betas": np.asarray(self.betas),
            "eps": np.asarray(self.eps),
            "weight_decay": np.asarray(self.weight_decay),
            "t": np.asarray(self.t),
        }
        return state | self._per_parameter_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, onto each parameter's device."""
        self._load_per_parameter_state(state)
        self.lr, self.eps, self.weight_decay = float(state["lr"]), float(state["eps"]), float(state["weight_decay"])
        self.betas = (float(state["betas"][0]), float(state["betas"][1]))
        self.t = int(state["t"])


def learning_rate(lr: float, t: int, iters: int, policy: str = "fixed", warmup: int = 0) -> float:
    """The rate of iteration t (from 0) of ``iters``: linear warm-up over ``warmup`` iterations, then
    ``policy`` 'fixed' (the paper's) or 'poly', ``lr * (1 - t / iters) ** 0.9``."""
    if policy == "poly":
        lr *= (1.0 - t / iters) ** 0.9
    elif policy != "fixed":
        raise ValueError(f"unknown learning-rate policy {policy!r}; choose 'fixed' or 'poly'")
    if t < warmup:
        lr *= (t + 1) / warmup
    return lr
