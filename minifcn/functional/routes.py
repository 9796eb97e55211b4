"""Which route an op takes: the plain reference, a fast CPU route, or the GPU's.

Every op of ``minifcn.functional`` has a plain reference, written as the
paper and a textbook put it, and that is where a reader starts. Some ops
also have fast CPU routes (``functional/cpu/``): each is one named condition
and one function, tested against the reference, and each op's dispatcher
lists its routes in a table in its docstring. On a GPU an op takes one
route, its CUDA kernels.

``reference()`` turns the fast CPU routes off and runs the references
instead (on a GPU each op keeps its one route, the CUDA kernels)::

    with minifcn.reference():
        loss = net(x)...            # every op by its plain reference

or, for a whole process, ``MINIFCN_REFERENCE=1`` in the environment. The
references trade speed and memory for plainness (a convolution builds all of
its columns at once, for instance): use them to read, to check, and to
measure what the fast routes buy.

``took(op, route)`` counts the routes taken, per process: ``counts()`` reads
them, and the tests check that every route of every dispatcher is reached.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

#: Each dispatcher's routes, by name, as its docstring's table lists them.
ROUTES: dict[str, tuple[str, ...]] = {}

_state = threading.local()
_counts: Counter = Counter()


def declare(op: str, *routes: str) -> str:
    """Register dispatcher ``op`` and the names of its routes; returns ``op``."""
    ROUTES[op] = routes
    return op


def use_reference() -> bool:
    """Whether the plain references run: inside ``reference()``, or with MINIFCN_REFERENCE set (not 0)."""
    on = getattr(_state, "on", None)
    if on is None:
        return os.environ.get("MINIFCN_REFERENCE", "0") not in ("", "0")
    return on


@contextmanager
def reference(on: bool = True) -> Iterator[None]:
    """Within the block, every op runs its plain reference (``on=False``: its fast routes, the default).

    The setting belongs to the calling thread, as ``no_grad`` does.
    """
    before = getattr(_state, "on", None)
    _state.on = bool(on)
    try:
        yield
    finally:
        _state.on = before


def took(op: str, route: str) -> str:
    """Count that ``op`` took ``route`` (a name ``declare`` registered); returns the route's name."""
    if route not in ROUTES.get(op, ()):
        raise KeyError(f"{op} has no route named {route!r}; its routes: {ROUTES.get(op)}")
    _counts[(op, route)] += 1
    return route


def counts() -> dict[tuple[str, str], int]:
    """How many times each (op, route) was taken in this process."""
    return dict(_counts)
