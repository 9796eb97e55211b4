"""Both cores on the memory-bound passes: an elementwise job split by channels over a few threads.

Max pooling reads a whole feature map and does no arithmetic to speak of: one
core cannot pull memory as fast as two. NumPy releases the GIL inside its
loops, so threads that each take a contiguous range of the channels run at
once. The split is fixed and each thread writes only its own channels, so the
result is the same, bit for bit, whatever the threads' timing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

#: How many threads share a pass: the cores this process may use, at most 4.
THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
#: Below this many bytes a pass runs on one thread: starting the others would cost more than it saves.
MIN_BYTES = 4 * 2**20

_pool: ThreadPoolExecutor | None = None


def by_channels(job: Callable[[int, int], None], channels: int, nbytes: int) -> None:
    """Run ``job(c0, c1)`` on contiguous channel ranges covering [0, channels), on up to THREADS threads."""
    global _pool
    parts = min(THREADS, channels) if nbytes >= MIN_BYTES else 1
    if parts < 2:
        job(0, channels)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="minifcn")
    bounds = [channels * i // parts for i in range(parts + 1)]
    for done in [_pool.submit(job, bounds[i], bounds[i + 1]) for i in range(parts)]:
        done.result()  # re-raises a thread's error here
