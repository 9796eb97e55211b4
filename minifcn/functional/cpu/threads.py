"""Both cores on the memory-bound passes: work split into fixed parts, one thread each.

Two kinds of pass cannot keep two cores busy by themselves:

- Max pooling reads a whole feature map and does no arithmetic to speak of:
  one core cannot pull memory as fast as two. ``by_channels`` gives each
  thread a contiguous range of the channels.
- A convolution with few channels is a matrix product with little arithmetic
  per byte of its columns. Cut into tiles that stay in a core's cache, each
  thread unfolding and multiplying its own tiles with BLAS on one thread, it
  runs faster than one large product over BLAS's threads (``tiles.py`` says
  which layers, docs/performance.md by how much). ``by_parts`` with
  ``single_threaded_blas`` does that, and ``matmul`` splits the other
  products of the fast convolution routes over the same threads.

NumPy releases the GIL inside its loops and BLAS calls, so the threads run at
once. The split is fixed (it depends on the sizes and the thread count, never
on timing), and each thread writes only its own part, so a result is the
same, bit for bit, from one run to the next.

BLAS's thread count is OpenBLAS's (NumPy's wheels ship it), found by name in
the loaded library. Where it cannot be found (another BLAS, another system),
``blas_threads`` says 1: the work runs on the calling thread and BLAS's own
threads, slower on few channels, never wrong.

A part of a split pass must not split again: it would wait for threads (or
for BLAS's lock) that wait for it. So inside a part, ``by_parts`` with more
than one range and ``single_threaded_blas`` raise ``NestedPassError`` at
once, on whichever thread the part runs; ``matmul`` on a product small
enough for one thread, or a plain ``numpy.matmul``, is what a part may call.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy

#: How many threads share a pass: the cores this process may use, at most 4.
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
#: Below this many bytes a pass runs on one thread: starting the others would cost more than it saves.
MIN_BYTES = 4 * 2**20
#: Below this many multiply-adds a matrix product runs on one thread, for the same reason.
MIN_PRODUCT = 2**22
#: Up to this many multiply-adds OpenBLAS runs a product on the calling thread by itself (its
#: GEMM_MULTITHREAD_THRESHOLD of 4 times 65536): ``matmul`` hands these straight to it.
OWN_THREAD_PRODUCT = 2**18

_pool: ThreadPoolExecutor | None = None
_in_part = threading.local()  # .on: this thread is running a part of a split pass
_forced: int | None = None  # set by ``using``


class NestedPassError(RuntimeError):
    """A part of a split pass tried to split again (or to take BLAS's lock): it would deadlock."""


def _check_not_in_part(what: str) -> None:
    if getattr(_in_part, "on", False):
        raise NestedPassError(
            f"{what} inside a part of a split pass would wait for the threads that wait for it; "
            "a part may call numpy.matmul (BLAS is on one thread there), not another split"
        )


def _as_part(job: Callable[[int, int], Any], i0: int, i1: int) -> Any:
    """Run ``job(i0, i1)`` marked as a part, so that a nested split raises instead of waiting forever."""
    _in_part.on = True
    try:
        return job(i0, i1)
    finally:
        _in_part.on = False


def by_parts(job: Callable[[int, int], Any], count: int, parts: int) -> list:
    """``job(i0, i1)`` over ``parts`` contiguous ranges covering [0, count), each on its own thread; their results.

    Range p is [count*p // parts, count*(p + 1) // parts): a function of the
    sizes alone. Empty ranges are not run. The calling thread runs the first
    range itself while the pool's threads run the others: one thread fewer
    to wake and one less hand-over per pass (a network makes dozens of these
    passes a step; docs/performance.md, "The threads"). Every range has finished
    when this returns, even when one raised; the first error is raised here.
    """
    global _pool
    bounds = [count * p // parts for p in range(parts + 1)]
    ranges = [(i0, i1) for i0, i1 in zip(bounds, bounds[1:]) if i1 > i0]
    if len(ranges) < 2:
        return [job(i0, i1) for i0, i1 in ranges]
    _check_not_in_part("a split pass")
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="minifcn")
    others = [_pool.submit(_as_part, job, i0, i1) for i0, i1 in ranges[1:]]
    try:
        first = _as_part(job, *ranges[0])
    finally:
        wait(others)  # no range may still be writing when the caller goes on, error or not
    return [first] + [done.result() for done in others]


def by_channels(job: Callable[[int, int], None], channels: int, nbytes: int) -> None:
    """Run ``job(c0, c1)`` on contiguous channel ranges covering [0, channels), on up to ``count()`` threads.

    One thread where the pass moves less than MIN_BYTES. Any elementwise job
    splits this way (the optimisers split their flat buffers by elements).
    """
    by_parts(job, channels, min(count(), channels) if nbytes >= MIN_BYTES else 1)


def matmul(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` for 2-D NumPy arrays, its columns split over the threads, BLAS on one thread in each.

    Shapes: a (M, K), b (K, N) -> (M, N), into ``out`` when given. Thread p
    computes columns [N*p // parts, N*(p + 1) // parts) with one BLAS call
    over the whole of K. Products under MIN_PRODUCT multiply-adds run on the
    calling thread alone.

    Why not BLAS's own threads: after a product they keep spinning for a
    while, and on a machine with as many threads as cores they take the
    cores from whatever comes next (the tiles, the pooling threads). Split
    here, every pass of a network uses the same threads, and BLAS's stay
    asleep.
    """
    M, K = a.shape
    N = b.shape[1]
    if M * N * K <= OWN_THREAD_PRODUCT:  # BLAS keeps these on the calling thread itself
        return numpy.matmul(a, b) if out is None else numpy.matmul(a, b, out=out)
    if out is None:
        out = numpy.empty((M, N), dtype=numpy.result_type(a, b))
    parts = blas_threads() if M * N * K >= MIN_PRODUCT else 1

    def columns(n0: int, n1: int) -> None:
        numpy.matmul(a, b[:, n0:n1], out=out[:, n0:n1])

    with single_threaded_blas():
        by_parts(columns, N, parts)
    return out


# ---------------------------------------------------------------------------
# BLAS's own threads


def _find_openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """OpenBLAS's get_num_threads and set_num_threads in the library this process loaded, or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (
            ("scipy_openblas", "64_"),
            ("scipy_openblas", ""),
            ("openblas", "64_"),
            ("openblas", ""),
        ):
            try:
                get = getattr(library, f"{prefix}_get_num_threads{suffix}")
                set_ = getattr(library, f"{prefix}_set_num_threads{suffix}")
            except AttributeError:
                continue
            get.restype, set_.restype, set_.argtypes = ctypes.c_int, None, [ctypes.c_int]
            return get, set_
    return None


_openblas: Any = False  # False: not looked for yet; then the pair of functions, or None
_blas_lock = threading.RLock()  # re-entrant: a product inside a single-threaded block runs, it does not wait


def _blas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    global _openblas
    if _openblas is False:  # looked for on first use, once NumPy has loaded its BLAS
        _openblas = _find_openblas()
    return _openblas


def count() -> int:
    """How many threads a pass may use: BLAS's thread count, at most THREADS; THREADS where it is unknown.

    So the settings that limit BLAS (``OPENBLAS_NUM_THREADS``,
    ``OMP_NUM_THREADS``) limit minifcn too, as ``OMP_NUM_THREADS`` limits
    PyTorch's threads.
    """
    if _forced is not None:
        return _forced
    blas = _blas()
    return THREADS if blas is None else max(1, min(THREADS, blas[0]()))


@contextmanager
def using(n: int) -> Iterator[None]:
    """Within the block, passes split over ``n`` threads whatever BLAS's count (the tests run the splits
    with two or more threads this way, where each test process has one core's share)."""
    global _forced
    before, _forced = _forced, n
    try:
        yield
    finally:
        _forced = before


def blas_threads() -> int:
    """How many threads run one-thread BLAS products at once: ``count()``.

    1 where BLAS's thread count cannot be set (then ``single_threaded_blas``
    does nothing, and the calling thread runs the products on BLAS's threads).
    """
    return 1 if _blas() is None and _forced is None else count()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block, BLAS runs each product on the thread that calls it; then its count is put back."""
    _check_not_in_part("single_threaded_blas")
    blas = _blas()
    if blas is None:
        yield
        return
    get, set_ = blas
    with _blas_lock:
        before = get()
        set_(1)
        try:
            yield
        finally:
            set_(before)
