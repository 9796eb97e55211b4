"""The CUDA kernels on the CPU: the same ``.cu`` sources built by ``g++``, launched by minifcn's launcher.

A machine without a GPU can still run every kernel, thread by thread::

    with host.kernels_on_host() as launched:
        y = F.conv2d(x, w)       # NumPy arrays, yet the GPU branch runs: im2col_f32, on the CPU
    launched                     # ['im2col_f32']

Each ``.cu`` file, as ``launch.source`` gives it (the text NVRTC compiles on a
GPU), is compiled with ``MINIFCN_HOST`` defined, where ``common.cuh`` turns
CUDA's few words into C++: ``threadIdx`` and ``blockIdx`` are per-thread
variables, ``__syncthreads`` a barrier, a warp shuffle an exchange through
memory. Every block runs on ``HOST_THREADS`` real threads (two warps, so that
``block_sum``'s shuffles and barriers execute as they do on a GPU), one block
after another. The grid is the launcher's, capped at ``HOST_MAX_BLOCKS``:
the kernels loop with a grid stride, so any grid computes the same result.

The arithmetic follows the GPU's: float kernels call the float overloads of
``exp``, ``log`` and ``sqrt``, multiply-adds are fused (``-ffp-contract=fast``,
with ``-mfma`` where the CPU has it), as NVRTC does by default, and subnormal
floats are flushed to zero, read and written, as CuPy's ``-ftz=true`` has it
(on x86 the same switch flushes float64's subnormals too, below 2.2e-308,
which a GPU keeps).

Inside ``kernels_on_host()`` the launcher compiles nothing and asks no GPU:
its three calls that need CUDA are replaced, and ``kernels.on_gpu`` says yes
to every array, so every op takes its GPU branch; on leaving, all four are
restored. The tests use it, and so does the lesson on the kernels.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from typing import Any, Callable, Iterator

import numpy as np

from . import kernels, launch

HOST_THREADS = 64  # threads per block: two warps
HOST_MAX_BLOCKS = 8  # blocks per launch at most; the grid-stride loops cover the rest

#: What the host build appends to each file: a C entry point per kernel that runs it on a team of threads.
_RUNNER = """
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>
// A GPU runs CuPy's kernels with -ftz=true: a float32 subnormal reads as zero and a subnormal result is
// written as zero (moves and stores keep their bits). The team's threads do the same, each setting its own
// control register (NumPy's thread is left alone): on x86 flush-to-zero and denormals-are-zero, which there
// cover float64 too; on ARM FZ.
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static void flush_subnormals() { _mm_setcsr(_mm_getcsr() | 0x8040); }
#elif defined(__aarch64__)
static void flush_subnormals() {
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr | (uint64_t(1) << 24)));
}
#else
static void flush_subnormals() {}
#endif
// Run `kernel` as a launch of `blocks` blocks of `threads` threads: one thread of the CPU per thread
// of a block, walking the blocks in step (a barrier after each, so the block's statics are free).
static void host_run(int blocks, int threads, const std::function<void()>& kernel) {
    blockDim.x = threads;
    gridDim.x = blocks;
    std::vector<std::thread> team;
    for (int t = 0; t < threads; ++t)
        team.emplace_back([&, t] {
            flush_subnormals();
            threadIdx.x = t;
            for (int b = 0; b < blocks; ++b) {
                blockIdx.x = b;
                kernel();
                __syncthreads();
            }
        });
    for (std::thread& thread : team) thread.join();
}
"""


def available() -> bool:
    """Whether this machine can build the kernels for the CPU (it needs ``g++``)."""
    return shutil.which("g++") is not None


def host_source(filename: str) -> str:
    """``launch.source(filename)`` and, for each kernel ``k``, an entry ``host_k(blocks, threads, args...)``.

    The entries' parameters are the launcher's table (``launch.SIGNATURES``, which a test holds equal to
    the C declarations), with T the kernel's float type.
    """
    text = launch.source(filename) + _RUNNER
    for kernel, (file, params) in launch.SIGNATURES.items():
        if file != filename:
            continue
        for suffix, T in (("f32", "float"), ("f64", "double")):
            declared = [re.sub(r"\bT\b", T, p) for p in params]
            names = ", ".join(p.split()[-1] for p in params)
            text += (
                f'extern "C" void host_{kernel}_{suffix}(int blocks, int threads, {", ".join(declared)}) '
                f"{{ host_run(blocks, threads, [&] {{ {kernel}_{suffix}({names}); }}); }}\n"
            )
    return text


def compiler_flags() -> list[str]:
    """g++'s flags: C++20 (its atomic wait for the barriers), threads, and the GPU's float arithmetic (fused
    multiply-adds, which g++ forms at -O2)."""
    flags = ["-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-DMINIFCN_HOST", "-ffp-contract=fast"]
    if platform.machine().lower() in ("x86_64", "amd64") and _cpu_has_fma():
        flags.append("-mfma")  # elsewhere (aarch64) fused multiply-add is part of the base instruction set
    return flags


def _cpu_has_fma() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " fma " in f.read()
    except OSError:
        return False


_LIBRARIES: dict[str, ctypes.CDLL] = {}


def cache_folder() -> str:
    """Where built kernels are kept between processes: ``$MINIFCN_CACHE/host-kernels``, else
    ``$XDG_CACHE_HOME/minifcn/host-kernels``, else ``~/.cache/minifcn/host-kernels``."""
    root = os.environ.get("MINIFCN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "minifcn"
    )
    return os.path.join(root, "host-kernels")


def build(folder: str | None = None) -> dict[str, ctypes.CDLL]:
    """Every ``.cu`` file compiled for the CPU as a shared library, once per process: filename -> library.

    The libraries are kept in ``folder`` (by default ``cache_folder()``, or a
    temporary folder where that cannot be written), each named by a hash of
    its source, the flags and the compiler's version: a later process loads
    them instead of compiling again, and any change compiles anew. The files
    that are missing compile at once, one ``g++`` each; each is written under
    a temporary name and renamed, so a process never loads a half-written one.
    """
    if not available():
        raise RuntimeError("building the CUDA kernels for the CPU needs g++, which is not on this machine")
    if _LIBRARIES:
        return _LIBRARIES
    folder = folder or cache_folder()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = tempfile.mkdtemp(prefix="minifcn-host-")
    flags = compiler_flags()
    version = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    sources = {f: host_source(f) for f in sorted({f for f, _ in launch.SIGNATURES.values()})}
    paths, running = {}, {}
    for filename, text in sources.items():
        key = hashlib.sha256("\0".join([text, *flags, version]).encode()).hexdigest()[:16]
        paths[filename] = os.path.join(folder, f"{filename.replace('.cu', '')}-{key}.so")
        if not os.path.exists(paths[filename]):
            partial = f"{paths[filename]}.{os.getpid()}.part"
            compiler = subprocess.Popen(
                ["g++", "-x", "c++", *flags, "-o", partial, "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                compiler.stdin.write(text)
                compiler.stdin.close()
            except BrokenPipeError:  # g++ stopped before reading it all: its errors say why
                pass
            running[filename] = (compiler, partial)
    failed = []
    for filename, (compiler, partial) in running.items():  # every compiler waited for, even after a failure
        errors = compiler.stderr.read()
        if compiler.wait(timeout=300) == 0:
            os.replace(partial, paths[filename])
        else:
            failed.append(f"minifcn/cuda/{filename} did not compile for the host:\n{errors}")
            if os.path.exists(partial):
                os.remove(partial)
    if failed:
        raise RuntimeError("\n".join(failed))
    for filename, path in paths.items():
        _LIBRARIES[filename] = ctypes.CDLL(path)
    return _LIBRARIES


def as_ctype(value: Any) -> Any:
    """What ctypes passes for each argument the launcher produces; anything else is a launcher bug."""
    if isinstance(value, np.ndarray):
        return ctypes.c_void_p(value.ctypes.data)
    converters = {np.int32: ctypes.c_int, np.int64: ctypes.c_longlong, np.float32: ctypes.c_float}
    converters[np.float64] = ctypes.c_double
    if type(value) not in converters:
        raise TypeError(f"the launcher passed a {type(value).__name__}; CuPy needs a NumPy scalar of the C type")
    return converters[type(value)](value)


@contextlib.contextmanager
def kernels_on_host() -> Iterator[list[str]]:
    """Within it, every op's GPU branch runs, on NumPy arrays, with the kernels built for the CPU.

    Yields the list of the kernels launched (``'im2col_f32'``, ...), in order, growing as they run.
    """
    libraries = build()
    launched: list[str] = []

    def function(name: str, filename: str) -> Callable:
        entry = getattr(libraries[filename], "host_" + name)

        def call(grid: tuple, block: tuple, args: tuple) -> None:
            if len(grid) != 1 or len(block) != 1 or grid[0] < 1 or block[0] != launch.THREADS_PER_BLOCK:
                raise ValueError(f"{name}: a launch of grid {grid} and block {block} is not one the launcher makes")
            launched.append(name)
            entry(ctypes.c_int(min(grid[0], HOST_MAX_BLOCKS)), ctypes.c_int(HOST_THREADS), *map(as_ctype, args))

        return call

    replaced = {
        (launch, "_function"): function,
        (launch, "_device_id"): lambda array: 0,
        (launch, "_current_device"): lambda: 0,
        (kernels, "on_gpu"): lambda *arrays: True,
    }
    saved = {key: getattr(*key) for key in replaced}
    for (module, name), value in replaced.items():
        setattr(module, name, value)
    try:
        yield launched
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)
