"""Numerical gradients by central differences, and ``gradcheck`` against backward.

Every hand-written backward pass is proven against the definition of the
derivative. Take the scalar L = sum(fn(inputs) * r) for a fixed random r
(so every output element matters, each with its own weight). Then

    dL/dx[i]  ~  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

with error O(eps^2) for smooth fn. In float64 with eps ~ 1e-6 the two sides
agree to about 1e-8 relative; in float32 rounding alone would swamp them,
which is why gradcheck insists on float64.

Checking every element costs two forward passes each. For large tensors
(whole networks) ``max_elements`` checks a random sample of elements, and
``n_directions`` checks random directions v: the directional derivative
(L(x + eps v) - L(x - eps v)) / (2 eps) must equal <dL/dx, v>, which tests
every element of the gradient at once (as Chainer's check_backward does).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .autograd import Tensor, no_grad
from .backend import get_array_module, to_device


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def _objective(fn: Callable[..., Tensor], inputs: Sequence[Tensor], r: Any) -> float:
    with no_grad():
        y = fn(*inputs)
    return float((y.data * r).sum())


def _output_weights(fn: Callable[..., Tensor], inputs: Sequence[Tensor], grad_output: Any, seed: int) -> Any:
    """The fixed weights r of L = sum(fn(inputs) * r): grad_output, or standard normal."""
    with no_grad():
        y = fn(*inputs)
    if not isinstance(y, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(y).__name__}")
    if grad_output is not None:
        return grad_output.data if isinstance(grad_output, Tensor) else grad_output
    xp = get_array_module(y.data)
    r = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    return xp.asarray(r) if xp is not np else r


def numerical_grad(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    index: int,
    eps: float = 1e-6,
    grad_output: Any = None,
    elements: Sequence[int] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Central-difference estimate of dL/d(inputs[index]) with L = sum(fn(*inputs) * r).

    Returns an array of the input's shape (NaN where ``elements``, a list of
    flat indices, leaves an element unchecked). ``r`` is ``grad_output``, or
    standard normal drawn from ``seed``.
    """
    r = _output_weights(fn, inputs, grad_output, seed)
    if not inputs[index].data.flags.c_contiguous:
        inputs[index].data = inputs[index].data.copy()  # so that the flat view below aliases it
    x = inputs[index].data
    flat = x.reshape(-1)  # a view: perturbing it perturbs the input
    out = np.full(x.size, np.nan)
    for i in range(x.size) if elements is None else elements:
        old = flat[i].item()
        flat[i] = old + eps
        plus = _objective(fn, inputs, r)
        flat[i] = old - eps
        minus = _objective(fn, inputs, r)
        flat[i] = old
        out[i] = (plus - minus) / (2 * eps)
    return out.reshape(x.shape)


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
    grad_output: Any = None,
    max_elements: int | None = None,
    n_directions: int = 0,
    seed: int = 0,
) -> bool:
    """Check the backward pass of ``fn`` against central differences; raise GradcheckError on a mismatch.

    ``fn(*inputs)`` returns a Tensor and must be deterministic (no dropout in
    training mode). Every input with ``requires_grad`` is checked; it must be
    float64. An element passes when |analytic - numerical| <= atol + rtol *
    |numerical|; the error names the input, the worst element's index and
    both values.

    ``max_elements``: check at most this many randomly chosen elements per
    input (all when None). ``n_directions``: also check that many random
    directional derivatives per input.
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; gradients are checked in float64 "
                "(make the inputs and parameters float64)"
            )

    r = _output_weights(fn, inputs, grad_output, seed)
    for i in checked:
        inputs[i].grad = None
    y = fn(*inputs)
    y.backward(r)
    rng = np.random.default_rng(seed + 1)

    for i in checked:
        t = inputs[i]
        if t.grad is None:
            raise GradcheckError(f"gradcheck: input {i} (shape {t.shape}) received no gradient from backward")
        analytic = to_device(t.grad, "cpu").astype(np.float64)
        if max_elements is None or t.size <= max_elements:
            elements = None
        else:
            elements = rng.choice(t.size, size=max_elements, replace=False)
        _compare(i, t.shape, analytic, numerical_grad(fn, inputs, i, eps, r, elements), atol, rtol)
        for d in range(n_directions):
            _check_direction(fn, inputs, i, r, analytic, eps, atol, rtol, rng, d)
    for i in checked:
        inputs[i].grad = None
    return True


def _compare(i: int, shape: tuple, analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float) -> None:
    """GradcheckError naming the worst element of input ``i`` where |analytic - numerical| > atol + rtol |numerical|
    (elements not computed numerically are NaN there and left out)."""
    idx = np.flatnonzero(~np.isnan(numeric.reshape(-1)))
    a, n = analytic.reshape(-1)[idx], numeric.reshape(-1)[idx]
    excess = np.abs(a - n) - (atol + rtol * np.abs(n))
    if idx.size and excess.max() > 0:
        worst = int(np.argmax(excess))
        where = np.unravel_index(idx[worst], shape)
        raise GradcheckError(
            f"gradcheck: input {i} (shape {shape}) at element {tuple(int(k) for k in where)}: "
            f"analytic {a[worst]:.10g}, numerical {n[worst]:.10g} "
            f"(|diff| {abs(a[worst] - n[worst]):.3g} > atol {atol:g} + rtol {rtol:g} * |numerical|)"
        )


def _check_direction(fn, inputs, i, r, analytic, eps, atol, rtol, rng, d) -> None:
    t = inputs[i]
    xp = get_array_module(t.data)
    v = rng.standard_normal(t.shape)
    v /= np.linalg.norm(v)
    v_dev = xp.asarray(v) if xp is not np else v
    original = t.data.copy()
    t.data[...] = original + eps * v_dev
    plus = _objective(fn, inputs, r)
    t.data[...] = original - eps * v_dev
    minus = _objective(fn, inputs, r)
    t.data[...] = original
    numeric = (plus - minus) / (2 * eps)
    exact = float((analytic * v).sum())
    if abs(exact - numeric) > atol + rtol * abs(numeric):
        raise GradcheckError(
            f"gradcheck: input {i} (shape {t.shape}), random direction {d}: analytic <grad, v> {exact:.10g}, "
            f"numerical {numeric:.10g} (|diff| {abs(exact - numeric):.3g})"
        )
