"""Array backends: NumPy on the CPU, CuPy on NVIDIA GPUs.

Every op asks for its array module first (``xp = get_array_module(x)``) and
then writes ``xp.zeros``, ``xp.matmul`` and so on, so one piece of code runs
on both. This is the only module (with ``minifcn/cuda/``) that imports CuPy,
and it does so lazily: NumPy users never pay for, or need, CuPy.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

DEVICES = ("cpu", "cuda")

_INSTALL_HINT = (
    'install CuPy for your CUDA version, e.g. pip install -e ".[cuda12]" '
    '(CUDA 12) or pip install -e ".[cuda13]" (CUDA 13)'
)


def _is_cupy_array(array: Any) -> bool:
    # Checked by module name so that NumPy-only machines never import cupy.
    return type(array).__module__.split(".")[0] == "cupy"


def _import_cupy() -> types.ModuleType | None:
    try:
        import cupy  # optional: minifcn runs on NumPy alone
    except Exception:  # ImportError, or a broken CUDA install raising on import
        return None
    return cupy


def get_array_module(*arrays: Any) -> types.ModuleType:
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Non-array arguments (None, Python scalars) are ignored, so an op can pass
    an optional bias straight through.
    """
    for a in arrays:
        if _is_cupy_array(a):
            import cupy  # optional (GPU machines only): reached once a CuPy array exists

            return cupy
    return np


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device.

    Never raises: a missing CuPy, a missing driver or a machine without a GPU
    all simply give False.
    """
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _require_cuda() -> types.ModuleType:
    """Return the cupy module, or raise a RuntimeError that says what is missing."""
    cupy = _import_cupy()
    if cupy is None:
        raise RuntimeError(f"device 'cuda' was requested but CuPy is not installed: {_INSTALL_HINT}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # driver missing or broken
        raise RuntimeError(
            f"device 'cuda' was requested; CuPy is installed but cannot reach a CUDA device ({e}). "
            "Check the NVIDIA driver, or use device 'cpu'."
        ) from None
    if count == 0:
        raise RuntimeError("device 'cuda' was requested; CuPy is installed but sees no CUDA device. Use device 'cpu'.")
    return cupy


def check_device(device: str) -> str:
    """Validate a device name and return it in canonical form ('cpu' or 'cuda').

    Arrays and kernels go to CuPy's current device, so 'cuda:N' names that one
    or is refused: choose another GPU with ``cupy.cuda.Device(N).use()`` or
    ``CUDA_VISIBLE_DEVICES=N`` (PyTorch's 'cuda:N' moves one tensor; here the
    whole net lives on one device).
    """
    name, colon, index = device.partition(":") if isinstance(device, str) else ("", "", "")
    if name not in DEVICES or (colon and (name == "cpu" or not index.isdigit())):
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}, or 'cuda:N' for the current GPU")
    current = _current_gpu() if index else None
    if index and int(index) != current:
        raise ValueError(
            f"device {device!r}: minifcn puts arrays and kernels on CuPy's current GPU, {current}; make GPU "
            f"{index} the current one with cupy.cuda.Device({index}).use() or CUDA_VISIBLE_DEVICES={index}"
        )
    return name


def _current_gpu() -> int:
    """The index of CuPy's current device (0 when CuPy cannot tell)."""
    cupy = _import_cupy()
    try:
        return int(cupy.cuda.runtime.getDevice()) if cupy is not None else 0
    except Exception:
        return 0


def device_of(array: Any) -> str:
    """'cuda' for a CuPy array, 'cpu' for anything else."""
    return "cuda" if _is_cupy_array(array) else "cpu"


def to_device(array: Any, device: str) -> Any:
    """Return ``array`` on ``device`` ('cpu' or 'cuda'); no copy when it is already there."""
    device = check_device(device)
    if device == "cpu":
        if _is_cupy_array(array):
            return array.get()
        return np.asarray(array)
    cupy = _require_cuda()
    return cupy.asarray(array)


# ---------------------------------------------------------------------------
# TF32: a user's choice of speed over float32's last digits


_tf32 = False


def set_tf32(enabled: bool) -> None:
    """Let cuBLAS run float32 matrix products on TF32 tensor cores (``enabled``), or not (the default).

    TF32 keeps float32's range but rounds the products' inputs to 10 bits of
    mantissa (about 3 decimal digits) and accumulates in float32: on an H100
    or H200 the convolutions' matrix products run several times faster, and
    their results move by ~1e-3 relative. Off by default, so that float32
    means float32, as in PyTorch since 1.12
    (``torch.backends.cuda.matmul.allow_tf32 = False``). Affects only CuPy
    (GPU) float32 matrix products, on GPUs of compute capability 8.0 and up;
    NumPy on the CPU has no TF32. Turning it on needs CuPy and such a device:
    on an older GPU cuBLAS would keep float32 and only warn, so it is refused
    here, and ``tf32_enabled()`` says what the products really do.
    """
    global _tf32
    if enabled:
        cupy = _require_cuda()
        capability = str(cupy.cuda.Device().compute_capability)  # e.g. '75' for 7.5, '90' for 9.0
        if int(capability) < 80:
            raise RuntimeError(
                f"TF32 needs a GPU of compute capability 8.0 or later; this one is {capability[:-1]}.{capability[-1]}, "
                "so its float32 matrix products stay float32"
            )
    else:
        cupy = _import_cupy()
    if cupy is not None:
        linalg = _cupy_linalg()
        compute_type = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
        linalg.set_compute_type(cupy.float32, compute_type)
    _tf32 = bool(enabled)


def _cupy_linalg() -> types.ModuleType:
    """CuPy's module that keeps cuBLAS's compute type for each dtype (set_compute_type, COMPUTE_TYPE_*)."""
    from cupy._core import _routines_linalg  # optional (GPU machines only), like every cupy import

    return _routines_linalg


def tf32_enabled() -> bool:
    """Whether float32 matrix products on the GPU run on TF32 (only ever on a GPU of compute capability 8.0+)."""
    return _tf32
