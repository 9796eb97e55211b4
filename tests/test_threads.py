"""The threads the fast CPU routes share (functional/cpu/threads.py) and their scratch buffers (workspace.py)."""

import threading
import time

import numpy as np
import pytest

from minifcn.functional.cpu import threads, workspace


def test_split_product_equals_the_whole(rng, monkeypatch):
    # threads.matmul: each column block is one BLAS call over the whole of K, into a strided view of the result.
    monkeypatch.setattr(threads, "MIN_PRODUCT", 0)
    monkeypatch.setattr(threads, "OWN_THREAD_PRODUCT", 0)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 11))
    for parts in (1, 2, 3, 11, 12):
        monkeypatch.setattr(threads, "blas_threads", lambda: parts)
        np.testing.assert_allclose(threads.matmul(a, b), a @ b, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(threads.matmul(a, b.T.copy().T), a @ b, rtol=1e-14, atol=1e-14)  # b transposed
        out = np.full((5, 11), np.nan)
        assert threads.matmul(a, b, out) is out
        np.testing.assert_allclose(out, a @ b, rtol=1e-14, atol=1e-14)


def test_by_parts_runs_the_first_range_here_and_waits_for_all():
    """The ranges are fixed by the sizes, the calling thread runs the first, the results come in range order,
    and when one range raises, every other has finished before the error reaches the caller."""
    ran = {}

    def job(i0, i1):
        ran[(i0, i1)] = threading.current_thread()
        return list(range(i0, i1))

    assert threads.by_parts(job, 10, 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert ran[(0, 3)] is threading.current_thread()
    assert ran[(3, 6)] is not threading.current_thread() and ran[(6, 10)] is not threading.current_thread()
    assert threads.by_parts(job, 2, 4) == [[0], [1]]  # empty ranges are not run
    assert threads.by_parts(job, 0, 2) == []

    finished = threading.Event()

    def failing(i0, i1):
        if i0 == 0:
            raise ZeroDivisionError("the first range fails at once")
        time.sleep(0.05)  # the other range is still writing when the first fails
        finished.set()

    with pytest.raises(ZeroDivisionError, match="fails at once"):
        threads.by_parts(failing, 2, 2)
    assert finished.is_set(), "by_parts returned while a range was still running"


def test_single_threaded_blas_puts_the_count_back():
    blas = threads._blas()
    if blas is None:
        pytest.skip("this NumPy's BLAS is not OpenBLAS: its thread count is left alone")
    get, _ = blas
    before = get()
    with threads.single_threaded_blas():
        assert get() == 1
    assert get() == before
    with pytest.raises(ZeroDivisionError), threads.single_threaded_blas():
        1 / 0
    assert get() == before


def test_products_inside_a_single_threaded_block_run(rng):
    """A split product (or a tiled convolution) called within single_threaded_blas finishes: no lock waits on
    itself. Run on a thread of its own, so that a wait fails the test instead of hanging the suite."""
    a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 4096))
    out = {}

    def nested():
        with threads.single_threaded_blas(), threads.single_threaded_blas():
            out["product"] = threads.matmul(a, b)

    worker = threading.Thread(target=nested, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "a product inside single_threaded_blas waited on the lock it holds"
    np.testing.assert_allclose(out["product"], a @ b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("where", ["calling thread", "pool thread"])
def test_a_part_that_splits_again_raises_at_once_instead_of_waiting(rng, where):
    """A part of a split pass that takes BLAS's lock (a large threads.matmul) or splits again would wait for the
    threads that wait for it: it raises NestedPassError at once, on the calling thread's part and a pool thread's
    alike. Run on a thread of its own, so that a deadlock fails the test instead of hanging the suite."""
    a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 4096))
    errors = {}

    def job(i0, i1):
        on_caller = threading.current_thread() is caller
        if on_caller == (where == "calling thread"):
            with pytest.raises(threads.NestedPassError, match="split pass"):
                threads.matmul(a, b)  # large: it would take BLAS's lock
            with pytest.raises(threads.NestedPassError):
                threads.by_parts(lambda j0, j1: None, 4, 2)
            errors[where] = True
            np.testing.assert_allclose(threads.matmul(a[:4, :4], b[:4, :4]), a[:4, :4] @ b[:4, :4])  # small: runs

    def outer():
        with threads.single_threaded_blas():
            threads.by_parts(job, 2, 2)

    caller = threading.Thread(target=outer, daemon=True)
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive(), "a nested split waited instead of raising"
    assert errors == {where: True}
    threads.matmul(a, b)  # and after the pass, a split product runs again


def test_using_sets_the_thread_count_of_a_pass():
    seen = []
    with threads.using(3):
        assert threads.count() == 3 and threads.blas_threads() == 3
        threads.by_channels(lambda c0, c1: seen.append((c0, c1)), 9, threads.MIN_BYTES)
    assert sorted(seen) == [(0, 3), (3, 6), (6, 9)]


def test_workspace_buffers_are_reused_bounded_and_released():
    workspace.release()
    a = workspace.get(1000, np.float32)
    b = workspace.get(500, np.float32)
    assert np.shares_memory(a, b)  # the same buffer for the same use on the same thread
    assert not np.shares_memory(a, workspace.get(500, np.float32, "other use"))
    big = workspace.KEEP_BYTES // 4 + 1
    assert workspace.get(big, np.float32).size == big
    assert workspace.kept_bytes() < workspace.KEEP_BYTES  # the large one was not kept
    workspace.release()
    assert workspace.kept_bytes() == 0


def test_the_tiles_split_over_as_many_threads_as_blas_has(rng, monkeypatch):
    """The tile route asks BLAS's thread count before it sets BLAS to one thread per part: with BLAS on two
    threads, the tiles go to two parts (inside the block the count reads 1, and all would run on one)."""
    import minifcn as mf
    import minifcn.functional as F
    from minifcn.functional.cpu import tiles

    blas = threads._blas()
    if blas is None:
        pytest.skip("this NumPy's BLAS is not OpenBLAS: its thread count cannot be set")
    get, set_ = blas
    parts_seen = []
    split = threads.by_parts
    monkeypatch.setattr(threads, "by_parts", lambda job, n, parts: parts_seen.append(parts) or split(job, n, parts))
    monkeypatch.setattr(tiles, "TILE_MIN_BYTES", 0)
    monkeypatch.setattr(tiles, "TILE_BYTES", 1)
    before = get()
    set_(2)
    try:
        if get() != 2:
            pytest.skip("OpenBLAS would not take two threads here")
        F.conv2d(mf.Tensor(rng.standard_normal((1, 2, 6, 20))), mf.Tensor(rng.standard_normal((3, 2, 3, 3))), padding=1)
    finally:
        set_(before)
    assert 2 in parts_seen, parts_seen
