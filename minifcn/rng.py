"""The package's random number generator (used by dropout and the initialisers).

One seeded generator for the whole package, on the host, so that a training
run is reproducible and its random state can go into a checkpoint and come
back. Dropout on a GPU draws its masks here too and copies them over: the same
seed gives the same masks on either device, and a resumed GPU run is the
uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import get_array_module, to_device

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Re-seed the package's generator."""
    global _generator
    _generator = np.random.default_rng(seed)


def get_state() -> dict:
    """The generator's state, a JSON-serialisable dict (for checkpoints)."""
    return _generator.bit_generator.state


def set_state(state: dict) -> None:
    """Restore a state returned by :func:`get_state`."""
    _generator.bit_generator.state = state


def uniform_like(array: Any, dtype: Any = None) -> Any:
    """Uniform [0, 1) samples with ``array``'s shape, drawn from the package's generator and put on ``array``'s
    device (a copy to the GPU for a CuPy array: dropout's masks are a small share of a step's work)."""
    dtype = np.dtype(dtype or array.dtype)
    samples = _generator.random(array.shape, dtype=_native(dtype)).astype(dtype, copy=False)
    return samples if get_array_module(array) is np else to_device(samples, "cuda")


def uniform(low: float, high: float, shape: tuple, dtype: Any = np.float32) -> np.ndarray:
    """Uniform [low, high) samples from the package's generator (for initialisers)."""
    out = _generator.random(shape, dtype=_native(dtype))
    out *= high - low
    out += low
    return out.astype(dtype, copy=False)


def normal(std: float, shape: tuple, dtype: Any = np.float32) -> np.ndarray:
    """Normal samples with mean 0 and standard deviation ``std`` from the package's generator (for initialisers)."""
    out = _generator.standard_normal(shape, dtype=_native(dtype))
    out *= std
    return out.astype(dtype, copy=False)


def _native(dtype: Any) -> Any:
    """The generator draws float32 or float64 directly (no float64 detour for a float32 model)."""
    return np.float32 if np.dtype(dtype) == np.float32 else np.float64
