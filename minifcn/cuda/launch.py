"""Compile the ``.cu`` files with CuPy, and launch their kernels after checking every argument.

A kernel is called by its generic name and the dtype to run in::

    launch("im2col", numpy.float32, n_threads, x, cols, N, C, H, W, ...)

runs ``im2col_f32`` from ``im2col.cu``. Each file is compiled once per
process and device by ``cupy.RawModule`` (NVRTC), and CuPy keeps the compiled
code on disk between processes, so only the very first run pays for it.

Why the checks: a CUDA kernel trusts its arguments completely. Pass a float64
array to a float kernel, a non-contiguous view, or a Python int where the C
code reads a 4-byte ``int``, and it reads the wrong bytes without complaint.
So ``SIGNATURES`` spells each kernel's parameters as the ``.cu`` file does
(a test compares the two), and ``launch`` converts each argument to exactly
that C type, or raises an error that names the kernel and the parameter.

The threads: one per output element, ``THREADS_PER_BLOCK`` to a block. The
kernels loop with a grid stride (see ``common.cuh``), so the grid is capped
at ``MAX_BLOCKS`` and any number of elements is still covered.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import numpy as np

from ..backend import device_of

CUDA_DIR = os.path.dirname(os.path.abspath(__file__))

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535

#: The suffix of each precision's kernel.
SUFFIXES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

_IM2COL = ("int N", "int C", "int H", "int W", "int KH", "int KW", "int r0", "int r1", "int OW",
           "int sh", "int sw", "int ph", "int pw", "int dh", "int dw")  # fmt: skip
_POOL = ("int N", "int C", "int H", "int W", "int OH", "int OW", "int KH", "int KW", "int sh", "int sw", "int ph", "int pw")

#: kernel -> (file, parameters as "C type name"); T is the launch's float type.
SIGNATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "im2col": ("im2col.cu", ("const T* x", "T* cols") + _IM2COL),
    "col2im": ("im2col.cu", ("const T* cols", "T* x") + _IM2COL),
    "max_pool_forward": ("pool.cu", ("const T* x", "T* y", "int* argmax") + _POOL + ("int dh", "int dw")),
    "max_pool_backward": ("pool.cu", ("const T* gy", "const int* argmax", "T* gx") + _POOL + ("int dh", "int dw")),
    "avg_pool_forward": ("pool.cu", ("const T* x", "T* y") + _POOL),
    "avg_pool_backward": ("pool.cu", ("const T* gy", "T* gx") + _POOL),
    "softmax_loss_forward": ("softmax_loss.cu", ("const T* scores", "const long long* labels", "T* loss", "T* counted",
                                                 "int N", "int C", "long long P", "long long ignore")),  # fmt: skip
    "softmax_loss_backward": ("softmax_loss.cu", ("const T* scores", "const long long* labels", "T* grad",
                                                  "int N", "int C", "long long P", "long long ignore", "T scale")),  # fmt: skip
}

_ARRAY_DTYPES = {"int": np.dtype(np.int32), "long long": np.dtype(np.int64)}
_SCALAR_TYPES = {"int": np.int32, "long long": np.int64}


def source(filename: str) -> str:
    """The text of ``minifcn/cuda/<filename>`` with ``common.cuh`` pasted in place of its #include.

    Pasting keeps the compiler's job to one self-contained string: NVRTC
    needs no include path, and the text compiled is the text one reads.
    """
    with open(os.path.join(CUDA_DIR, filename)) as f:
        text = f.read()
    with open(os.path.join(CUDA_DIR, "common.cuh")) as f:
        common = f.read().replace("#pragma once", "")
    return text.replace('#include "common.cuh"', common)


# ---------------------------------------------------------------------------
# Compiling: one RawModule per (device, file), built on first use


_modules: dict[tuple[int, str], Any] = {}


def _function(name: str, filename: str) -> Callable:
    """The compiled kernel ``name`` of ``filename`` on the current device, callable as f(grid, block, args)."""
    import cupy

    key = (cupy.cuda.runtime.getDevice(), filename)
    if key not in _modules:
        _modules[key] = cupy.RawModule(code=source(filename))
    try:
        return _modules[key].get_function(name)
    except cupy.cuda.compiler.CompileException as e:
        raise RuntimeError(f"minifcn/cuda/{filename} did not compile:\n{e}") from None


def _device_id(array: Any) -> int:
    """The GPU that holds ``array``; an error for an array in host memory."""
    if device_of(array) != "cuda":
        raise TypeError(f"got a {type(array).__module__}.{type(array).__name__} in host memory")
    return array.device.id


def _current_device() -> int:
    import cupy

    return cupy.cuda.runtime.getDevice()


# ---------------------------------------------------------------------------
# Launching


def launch(kernel: str, dtype: Any, n_threads: int, *args: Any) -> None:
    """Run ``kernel`` in ``dtype`` (float32 or float64) with one thread per element, ``n_threads`` in all.

    ``args`` follow ``SIGNATURES[kernel]``: arrays for pointers (C-contiguous,
    of the pointer's dtype, on the current GPU), Python or NumPy numbers for
    the rest. Returns when the launch is queued, as CuPy's own kernels do.
    """
    filename, params = SIGNATURES[kernel]
    dtype = np.dtype(dtype)
    if dtype not in SUFFIXES:
        raise TypeError(f"CUDA kernel {kernel}: runs in float32 or float64, not {dtype}")
    if len(args) != len(params):
        raise TypeError(f"CUDA kernel {kernel}: takes {len(params)} arguments ({', '.join(params)}), got {len(args)}")
    values = tuple(_convert(kernel, param, arg, dtype) for param, arg in zip(params, args))
    if n_threads == 0:
        return
    blocks = min(-(-n_threads // THREADS_PER_BLOCK), MAX_BLOCKS)
    _function(f"{kernel}_{SUFFIXES[dtype]}", filename)((blocks,), (THREADS_PER_BLOCK,), values)


def _convert(kernel: str, param: str, arg: Any, dtype: np.dtype) -> Any:
    """``arg`` as the C parameter ``param`` (e.g. "const T* x", "int N") expects it, or a clear error."""
    ctype, name = re.fullmatch(r"(?:const )?(.+?)\s*(\*?)\s*(\w+)", param).group(1, 3)
    where = f"CUDA kernel {kernel}, argument {name!r}"
    if "*" in param:  # a pointer: an array of exactly that element type, contiguous, on this GPU
        expected = dtype if ctype == "T" else _ARRAY_DTYPES[ctype]
        if not (hasattr(arg, "dtype") and hasattr(arg, "flags")):
            raise TypeError(f"{where}: expected an array, got {type(arg).__name__}")
        try:
            device = _device_id(arg)
        except TypeError as e:
            raise TypeError(f"{where}: {e}; move it to the GPU first (Tensor.to('cuda'))") from None
        if device != _current_device():
            raise ValueError(f"{where}: the array is on GPU {device}, the kernel runs on GPU {_current_device()}")
        if arg.dtype != expected:
            raise TypeError(f"{where}: expected {expected} elements, got {arg.dtype} (shape {arg.shape})")
        if not arg.flags.c_contiguous:
            raise ValueError(f"{where}: the array of shape {arg.shape} must be C-contiguous (ascontiguousarray)")
        return arg
    if ctype == "T":
        return dtype.type(arg)
    value = int(arg)
    if value != arg:
        raise TypeError(f"{where}: expected a whole number, got {arg!r}")
    info = np.iinfo(_SCALAR_TYPES[ctype])
    if not info.min <= value <= info.max:
        raise ValueError(f"{where}: {value} does not fit a C {ctype} ({info.min}..{info.max}); the tensor is too large")
    return _SCALAR_TYPES[ctype](value)
