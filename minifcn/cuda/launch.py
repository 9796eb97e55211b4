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

CUDA_DIR = os.path.dirname(os.path.abspath(__file__))

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535

#: The suffix of each precision's kernel.
SUFFIXES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

_IM2COL = (
    "int N",
    "int C",
    "int H",
    "int W",
    "int KH",
    "int KW",
    "int r0",
    "int r1",
    "int OW",
    "int sh",
    "int sw",
    "int ph",
    "int pw",
    "int dh",
    "int dw",
)
_POOL = (
    "int N",
    "int C",
    "int H",
    "int W",
    "int OH",
    "int OW",
    "int KH",
    "int KW",
    "int sh",
    "int sw",
    "int ph",
    "int pw",
)

#: kernel -> (file, parameters as "C type name"); T is the launch's float type.
SIGNATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "im2col": ("im2col.cu", ("const T* x", "T* cols") + _IM2COL),
    "col2im": ("im2col.cu", ("const T* cols", "T* x") + _IM2COL),
    "max_pool_forward": ("pool.cu", ("const T* x", "T* y", "int* argmax") + _POOL + ("int dh", "int dw")),
    "max_pool_backward": ("pool.cu", ("const T* gy", "const int* argmax", "T* gx") + _POOL + ("int dh", "int dw")),
    "avg_pool_forward": ("pool.cu", ("const T* x", "T* y") + _POOL),
    "avg_pool_backward": ("pool.cu", ("const T* gy", "T* gx") + _POOL),
    "batch_norm_statistics": (
        "batch_norm.cu",
        (
            "const double* sums",
            "T* mean",
            "T* inv_std",
            "T* running_mean",
            "T* running_var",
            "int C",
            "long long m",
            "T momentum",
            "T eps",
        ),
    ),
    "batch_norm_forward": (
        "batch_norm.cu",
        (
            "const T* x",
            "const T* mean",
            "const T* inv_std",
            "const T* gamma",
            "const T* beta",
            "T* xhat",
            "T* y",
            "int N",
            "int C",
            "long long P",
        ),
    ),
    "batch_norm_backward": (
        "batch_norm.cu",
        (
            "const T* gy",
            "const T* xhat",
            "const double* sums",
            "const T* gamma",
            "const T* inv_std",
            "T* gx",
            "T* dgamma",
            "T* dbeta",
            "int N",
            "int C",
            "long long P",
            "long long m",
        ),
    ),
    "channel_sums": (
        "reduce.cu",
        ("const T* a", "const T* b", "double* partial", "int N", "int C", "long long P", "int S"),
    ),
    "sgd_update": ("optim.cu", ("T* w", "const T* g", "T* v", "long long n", "T rate", "T momentum", "T decay")),
    "adam_update": (
        "optim.cu",
        (
            "T* w",
            "const T* g",
            "T* m",
            "T* v",
            "long long n",
            "T rate",
            "T b1",
            "T one_minus_b1",
            "T b2",
            "T one_minus_b2",
            "T correction2",
            "T eps",
            "T decay",
        ),
    ),
    "softmax_loss_forward": (
        "softmax_loss.cu",
        (
            "const T* scores",
            "const long long* labels",
            "const T* weight",
            "T* loss",
            "T* counted",
            "int N",
            "int C",
            "long long P",
            "long long ignore",
        ),
    ),
    "softmax_loss_backward": (
        "softmax_loss.cu",
        (
            "const T* scores",
            "const long long* labels",
            "const T* weight",
            "T* grad",
            "int N",
            "int C",
            "long long P",
            "long long ignore",
            "const T* scale",
        ),
    ),
}

_ARRAY_DTYPES = {"int": np.dtype(np.int32), "long long": np.dtype(np.int64), "double": np.dtype(np.float64)}
_SCALAR_TYPES = {"int": np.int32, "long long": np.int64}


class _Parameter:
    """One C parameter, parsed once: its name, whether it is a pointer, and its C type."""

    __slots__ = ("name", "pointer", "ctype", "dtype", "scalar", "low", "high")

    def __init__(self, declaration: str):
        match = re.fullmatch(r"(?:const )?(.+?)\s*(\*?)\s*(\w+)", declaration)
        self.ctype, self.name = match.group(1), match.group(3)
        self.pointer = match.group(2) == "*"
        #: the element dtype of a pointer (None: the launch's float type T)
        self.dtype = None if self.ctype == "T" else _ARRAY_DTYPES.get(self.ctype) if self.pointer else None
        #: the NumPy scalar type of a whole-number parameter, and its range
        self.scalar = None if (self.pointer or self.ctype == "T") else _SCALAR_TYPES[self.ctype]
        if self.scalar is not None:
            info = np.iinfo(self.scalar)
            self.low, self.high = int(info.min), int(info.max)


#: kernel -> its parameters, parsed from SIGNATURES once (not at every launch).
_PARSED: dict[str, tuple[str, tuple[_Parameter, ...]]] = {
    kernel: (filename, tuple(_Parameter(p) for p in params)) for kernel, (filename, params) in SIGNATURES.items()
}


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
# Compiling: one RawModule per (device, file), built on first use; one function object per kernel


_modules: dict[tuple[int, str], Any] = {}
_functions: dict[tuple[int, str], Callable] = {}


def _function(name: str, filename: str) -> Callable:
    """The compiled kernel ``name`` of ``filename`` on the current device, callable as f(grid, block, args).

    Looked up once per device and kept: CuPy's ``get_function`` makes a new
    function object (a driver call) every time it is asked.
    """
    import cupy  # optional (GPU machines only): these run only when a kernel is launched

    device = cupy.cuda.runtime.getDevice()
    function = _functions.get((device, name))
    if function is None:
        if (device, filename) not in _modules:
            _modules[(device, filename)] = cupy.RawModule(code=source(filename))
        try:
            function = _functions[(device, name)] = _modules[(device, filename)].get_function(name)
        except cupy.cuda.compiler.CompileException as e:
            raise RuntimeError(f"minifcn/cuda/{filename} did not compile:\n{e}") from None
    return function


def _device_id(array: Any) -> int:
    """The GPU that holds ``array``; an error for an array in host memory."""
    try:
        return array.device.id  # a CuPy array's Device; NumPy's .device is the string 'cpu'
    except AttributeError:
        raise TypeError(f"got a {type(array).__module__}.{type(array).__name__} in host memory") from None


def _current_device() -> int:
    import cupy  # optional (GPU machines only): these run only when a kernel is launched

    return cupy.cuda.runtime.getDevice()


# ---------------------------------------------------------------------------
# Launching


def launch(kernel: str, dtype: Any, n_threads: int, *args: Any, blocks: int | None = None) -> None:
    """Run ``kernel`` in ``dtype`` (float32 or float64) with one thread per element, ``n_threads`` in all.

    ``args`` follow ``SIGNATURES[kernel]``: arrays for pointers (C-contiguous,
    of the pointer's dtype, on the current GPU), Python or NumPy numbers for
    the rest. ``blocks`` fixes the number of blocks instead (the per-channel
    reductions run one block per channel). Returns when the launch is queued,
    as CuPy's own kernels do.

    The checks cost a few microseconds: the signature was parsed at import,
    and each argument is one type test and a comparison or two
    (benchmarks/bench_overhead.py measures it).
    """
    filename, params = _PARSED[kernel]
    dtype = np.dtype(dtype)
    suffix = SUFFIXES.get(dtype)
    if suffix is None:
        raise TypeError(f"CUDA kernel {kernel}: runs in float32 or float64, not {dtype}")
    if len(args) != len(params):
        names = ", ".join(SIGNATURES[kernel][1])
        raise TypeError(f"CUDA kernel {kernel}: takes {len(params)} arguments ({names}), got {len(args)}")
    device = _current_device()
    values = [_convert(kernel, param, arg, dtype, device) for param, arg in zip(params, args)]
    if n_threads == 0:
        return
    if blocks is None:
        blocks = min(-(-n_threads // THREADS_PER_BLOCK), MAX_BLOCKS)
    _function(f"{kernel}_{suffix}", filename)((blocks,), (THREADS_PER_BLOCK,), tuple(values))


def _convert(kernel: str, param: _Parameter, arg: Any, dtype: np.dtype, device: int) -> Any:
    """``arg`` as the C parameter ``param`` expects it, or an error that names the kernel and the parameter."""
    if param.pointer:  # an array of exactly that element type, contiguous, on this GPU
        expected = param.dtype or dtype
        try:
            arg_dtype, contiguous = arg.dtype, arg.flags.c_contiguous
        except AttributeError:
            raise TypeError(f"{_where(kernel, param)}: expected an array, got {type(arg).__name__}") from None
        try:
            arg_device = _device_id(arg)
        except TypeError as e:
            raise TypeError(f"{_where(kernel, param)}: {e}; move it to the GPU first (Tensor.to('cuda'))") from None
        if arg_device != device:
            raise ValueError(
                f"{_where(kernel, param)}: the array is on GPU {arg_device}, the kernel runs on GPU {device}"
            )
        if arg_dtype != expected:
            raise TypeError(
                f"{_where(kernel, param)}: expected {expected} elements, got {arg_dtype} (shape {arg.shape})"
            )
        if not contiguous:
            raise ValueError(
                f"{_where(kernel, param)}: the array of shape {arg.shape} must be C-contiguous (ascontiguousarray)"
            )
        return arg
    if param.scalar is None:  # T: the launch's float type
        return dtype.type(arg)
    if type(arg) is int and param.low <= arg <= param.high:  # the usual case, checked in one line
        return param.scalar(arg)
    value = int(arg)
    if value != arg:
        raise TypeError(f"{_where(kernel, param)}: expected a whole number, got {arg!r}")
    if not param.low <= value <= param.high:
        raise ValueError(
            f"{_where(kernel, param)}: {value} does not fit a C {param.ctype} "
            f"({param.low}..{param.high}); the tensor is too large"
        )
    return param.scalar(value)


def _where(kernel: str, param: _Parameter) -> str:
    return f"CUDA kernel {kernel}, argument {param.name!r}"
