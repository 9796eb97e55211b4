"""Every fast CPU route against the plain reference, on shapes that reach it and at the edge of its condition.

Each case runs an op forward and backward twice, by its routes and inside
``minifcn.reference()``, in float64, and checks that the two agree (to
1e-12, or bit for bit where the arithmetic is the same), that the routes the
case is about were taken (``routes.counts``), and that the ones at the edge
of their condition were not. Memory that a route leaves uninitialised
(``np.empty``) is filled with NaN, so a route that reads what it never
wrote fails. Every case runs on one thread and split over two; one test
runs the splits at production sizes. ``test_every_route_has_a_case`` fails
when a dispatcher gains a route that no case here reaches.
"""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
from minifcn.functional import basic, conv, loss, norm, pool, routes
from minifcn.functional.cpu import blocks, flat, split_product, threads, tiles
from minifcn.functional.cpu import pool as cpu_pool

FWD, IG, WG = conv.FORWARD, conv.INPUT_GRAD, conv.WEIGHT_GRAD

_empty, _empty_like = np.empty, np.empty_like


def _nan_empty(shape, dtype=float, **kwargs):
    a = _empty(shape, dtype=dtype, **kwargs)
    a[...] = np.nan if a.dtype.kind == "f" else np.iinfo(a.dtype).max if a.dtype.kind in "iu" else 1
    return a


def _nan_empty_like(proto, dtype=None, **kwargs):
    a = _empty_like(proto, dtype=dtype, **kwargs)
    a[...] = np.nan if a.dtype.kind == "f" else np.iinfo(a.dtype).max if a.dtype.kind in "iu" else 1
    return a


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def setting(request, monkeypatch):
    """Uninitialised memory made NaN; every split pass split (over ``request.param`` threads) however small."""
    monkeypatch.setattr(np, "empty", _nan_empty)
    monkeypatch.setattr(np, "empty_like", _nan_empty_like)
    for name in ("MIN_BYTES", "MIN_PRODUCT", "OWN_THREAD_PRODUCT"):
        monkeypatch.setattr(threads, name, 0)
    monkeypatch.setattr(cpu_pool, "BLOCK_BYTES", 256)  # blocks of a few rows
    with threads.using(request.param):
        yield request.param


def _taken(run):
    """(what run() returns, the (op, route) pairs it took)."""
    before = routes.counts()
    out = run()
    after = routes.counts()
    return out, {key for key, n in after.items() if n > before.get(key, 0)}


def _both(run):
    """run() by the routes and by the references: (fast result, reference result, routes the fast run took)."""
    fast, taken = _taken(run)
    with mf.reference():
        ref, ref_taken = _taken(run)
    assert {route for _, route in ref_taken} <= {"reference"}, ref_taken
    return fast, ref, taken


def _close(fast, ref, rtol=1e-12):
    for a, b in zip(fast, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max())))


# ---------------------------------------------------------------------------
# Convolutions: (id, x shape, (OC, KH, KW), stride, padding, dilation, transposed, taken, not taken, settings)

CONV_CASES = [
    ("padding skip", (2, 3, 6, 7), (4, 3, 3), 1, 3, 1, False, {FWD: "padding skip", WG: "padding skip"}, {}, {}),
    ("padding skip, one axis", (1, 2, 5, 6), (3, 3, 3), 1, (5, 4), 2, False, {FWD: "padding skip"}, {}, {}),
    ("padding skip edge: pad = span - 1", (2, 3, 6, 7), (4, 3, 3), 1, 2, 1, False, {}, {FWD: "padding skip"}, {}),
    ("blocks", (2, 3, 5, 6), (4, 4, 6), (2, 3), 1, 1, False, {FWD: "blocks", IG: "blocks", WG: "blocks"}, {}, {}),
    ("blocks, upsampling", (2, 3, 4, 5), (2, 16, 16), 8, 4, 1, True, {IG: "blocks", FWD: "blocks"}, {}, {}),
    (
        "blocks, 17x9 by 6x3",
        (2, 3, 20, 14),
        (4, 17, 9),
        (6, 3),
        (2, 1),
        1,
        False,
        {FWD: "blocks", IG: "blocks", WG: "blocks"},
        {},
        {},
    ),
    (
        "blocks, 63 by 32",
        (1, 2, 3, 4),
        (2, 63, 63),
        32,
        16,
        1,
        True,
        {IG: "blocks", FWD: "blocks", WG: "blocks"},
        {},
        {},
    ),
    ("blocks edge: 5 by 2", (2, 3, 9, 8), (4, 5, 4), 2, 1, 1, False, {FWD: "reference"}, {FWD: "blocks"}, {}),
    ("blocks edge: dilation", (2, 3, 9, 8), (4, 4, 4), 2, 1, 2, False, {}, {FWD: "blocks", IG: "blocks"}, {}),
    ("tiles", (2, 4, 20, 24), (6, 3, 3), 1, 1, 1, False, {FWD: "tiles", WG: "tiles"}, {}, {"TILE_BYTES": 30000}),
    ("tiles, one row each", (1, 2, 9, 18), (3, 3, 2), 1, (2, 1), (1, 2), False, {FWD: "tiles"}, {}, {"TILE_BYTES": 1}),
    ("tiles edge: 129 outputs", (1, 2, 8, 24), (129, 3, 3), 1, 1, 1, False, {FWD: "flat columns"}, {FWD: "tiles"}, {}),
    ("tiles edge: bytes", (1, 4, 8, 24), (2, 3, 3), 1, 1, 1, False, {}, {FWD: "tiles"}, {"TILE_MIN_BYTES": 59905}),
    ("flat columns", (2, 3, 12, 20), (4, 3, 3), 1, 1, 1, False, {FWD: "flat columns", WG: "flat columns"}, {}, {}),
    ("flat columns, bands", (2, 3, 12, 20), (4, 3, 3), 1, 1, 1, False, {FWD: "flat columns"}, {}, {"BUDGET": 3000}),
    ("flat columns, 1x1", (1, 5, 4, 6), (3, 1, 1), 1, 0, 1, False, {FWD: "flat columns", WG: "flat columns"}, {}, {}),
    ("flat edge: OW = 16", (1, 2, 6, 18), (3, 3, 3), 1, 0, 1, False, {FWD: "flat columns"}, {}, {}),
    ("flat edge: OW = 15", (1, 2, 6, 17), (3, 3, 3), 1, 0, 1, False, {FWD: "reference"}, {FWD: "flat columns"}, {}),
    ("flipped kernel", (2, 3, 7, 6), (4, 3, 3), 1, 1, 1, False, {IG: "flipped kernel"}, {}, {}),
    ("flipped edge: 1.25 x", (1, 2, 20, 20), (3, 5, 1), 1, 0, 1, False, {IG: "flipped kernel"}, {}, {}),
    (
        "flipped edge: over 1.25 x",
        (1, 2, 20, 20),
        (3, 6, 1),
        1,
        0,
        1,
        False,
        {IG: "reference"},
        {IG: "flipped kernel"},
        {},
    ),
    (
        "split product",
        (2, 16, 12, 12),
        (32, 7, 7),
        1,
        0,
        1,
        False,
        {FWD: "split product", IG: "split product", WG: "split product"},
        {},
        {},
    ),
    (
        "split product edge: 2^18",
        (1, 64, 11, 11),
        (64, 2, 2),
        3,
        0,
        1,
        False,
        {FWD: "reference"},
        {FWD: "split product"},
        {},
    ),
    ("split product edge: over 2^18", (1, 64, 11, 11), (65, 2, 2), 3, 0, 1, False, {FWD: "split product"}, {}, {}),
    (
        "reference: 3 by 2",
        (2, 3, 9, 8),
        (4, 3, 3),
        2,
        1,
        1,
        False,
        {FWD: "reference", IG: "reference", WG: "reference"},
        {},
        {},
    ),
]


def _conv_run(case, rng):
    _, shape, (OC, KH, KW), stride, padding, dilation, transposed, *_ = case
    C = shape[1]
    x = rng.standard_normal(shape)
    w = rng.standard_normal((C, OC, KH, KW) if transposed else (OC, C, KH, KW))
    b = rng.standard_normal(OC)
    op = F.conv_transpose2d if transposed else F.conv2d

    def run():
        tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
        y = op(*tensors, stride=stride, padding=padding, dilation=dilation)
        y.backward(np.cos(np.arange(y.data.size)).reshape(y.shape))
        return [y.data] + [t.grad for t in tensors]

    return run


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_routes_match_the_reference(case, setting, rng, monkeypatch):
    taken_expected, not_taken, knobs = case[7], case[8], case[9]
    for name, value in knobs.items():
        module, attr = (tiles, name) if name.startswith("TILE") else (F.geometry, "IM2COL_BUDGET_BYTES")
        monkeypatch.setattr(module, attr, value)
    if "TILE_BYTES" in knobs and "TILE_MIN_BYTES" not in knobs:
        monkeypatch.setattr(tiles, "TILE_MIN_BYTES", 0)
    fast, ref, taken = _both(_conv_run(case, rng))
    _close(fast, ref)
    for op, route in taken_expected.items():
        assert (op, route) in taken, (op, route, taken)
    for op, route in not_taken.items():
        assert (op, route) not in taken, (op, route, taken)


def test_the_edges_above_sit_where_the_conditions_turn():
    # The edge cases are at the boundary: one step the other way and the condition flips.
    assert flat.applies((1, 2, 6, 18), (3, 2, 3, 3), (1, 1), (0, 0), (1, 1))
    assert not flat.applies((1, 2, 6, 17), (3, 2, 3, 3), (1, 1), (0, 0), (1, 1))
    assert blocks.applies((4, 3, 17, 9), (6, 3), (1, 1)) and blocks.applies((1, 1, 63, 63), (32, 32), (1, 1))
    assert not blocks.applies((4, 3, 5, 4), (2, 2), (1, 1))  # 6x4 is 1.2 times 5x4: "blocks edge: 5 by 2"
    assert blocks.applies((1, 1, 8, 1), (3, 1), (1, 1))  # 9 taps for 8: exactly 1/8 more
    assert not blocks.applies((1, 1, 7, 1), (2, 1), (1, 1))  # 8 for 7: 1/7 more
    assert 64 * 64 * 2 * 2 * 4 * 4 == split_product.MIN_MULTIPLY_ADDS  # "split product edge: 2^18"
    assert not split_product.applies((1, 64, 11, 11), (64, 64, 2, 2), (3, 3), (0, 0), (1, 1))
    assert split_product.applies((1, 64, 11, 11), (65, 64, 2, 2), (3, 3), (0, 0), (1, 1))
    columns_bytes = 2 * 9 * 1 * 8 * 26 * 8  # C*KH*KW * N * OH * Wp * itemsize of "tiles edge: bytes"
    assert columns_bytes == 29952
    assert tiles.applies((1, 2, 8, 24), (4, 2, 3, 3), (1, 1), (1, 1), (1, 1), 8) == (
        columns_bytes >= tiles.TILE_MIN_BYTES
    )


def test_the_tiles_case_has_tiles_of_several_rows(monkeypatch):
    # "tiles": 4 channels x 9 taps x 26 padded columns x 8 bytes = 7488 bytes a row; 30000 bytes a tile
    monkeypatch.setattr(tiles, "TILE_BYTES", 30000)
    assert tiles._tiles(2, 20, 4 * 9 * 26 * 8) == [(n, r, r + 4) for n in range(2) for r in range(0, 20, 4)]


def test_tiles_edge_bytes_is_taken_one_byte_lower(rng, monkeypatch):
    case = next(c for c in CONV_CASES if c[0] == "tiles edge: bytes")
    monkeypatch.setattr(tiles, "TILE_MIN_BYTES", 59904)
    _, _, taken = _both(_conv_run(case, rng))
    assert (FWD, "tiles") in taken
    monkeypatch.setattr(tiles, "TILE_MIN_BYTES", 59905)
    _, _, taken = _both(_conv_run(case, rng))
    assert (FWD, "tiles") not in taken


# ---------------------------------------------------------------------------
# Max pooling: the forward values and winners are exact, so the routes must agree bit for bit

POOL_CASES = [
    # id, x shape, kernel, stride, padding, dilation, ceil, backward route taken
    ("tiled windows: 2x2 ceil, odd", (2, 3, 7, 9), 2, 2, 0, 1, True, "tiled windows"),
    ("tiled windows: 2x2 even", (2, 3, 6, 8), 2, 2, 0, 1, False, "tiled windows"),
    ("tiled edge: 2x2 floor on 5x7", (2, 3, 5, 7), 2, 2, 0, 1, False, "blocks"),
    ("tiled edge: dilation", (1, 2, 9, 9), 2, 2, 0, 2, False, "blocks"),
    ("blocks: 3x3 by 2, overlapping", (2, 3, 9, 8), 3, 2, 1, 1, True, "blocks"),
    ("tiled windows: 3x3 by 3, padded to 9x9", (1, 2, 7, 7), 3, 3, 1, 1, False, "tiled windows"),
    ("tiled edge: 3x3 by 3 on 8x8", (1, 2, 8, 8), 3, 3, 1, 1, False, "blocks"),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_max_pool_routes_match_the_reference_exactly(case, setting, rng):
    _, shape, kernel, stride, padding, dilation, ceil_mode, backward_route = case
    x = rng.standard_normal(shape)
    x[0, 0, 1, :3] = x[0, 0, 0, :3]  # ties: the first maximum wins on every route

    def run():
        t = mf.Tensor(x, requires_grad=True)
        y = F.max_pool2d(t, kernel, stride, padding, dilation, ceil_mode)
        y.backward(1.0 + np.arange(y.data.size).reshape(y.shape))
        return [y.data, t.grad]

    fast, ref, taken = _both(run)
    for a, b in zip(fast, ref):
        np.testing.assert_array_equal(a, b)
    assert (pool.MAX_FORWARD, "blocks") in taken and (pool.MAX_BACKWARD, backward_route) in taken
    other = {"blocks": "tiled windows", "tiled windows": "blocks"}[backward_route]
    assert (pool.MAX_BACKWARD, other) not in taken


def test_avg_pool_takes_its_reference(rng):
    _, taken = _taken(lambda: F.avg_pool2d(mf.Tensor(rng.standard_normal((1, 2, 5, 5))), 2, ceil_mode=True))
    assert taken == {(pool.AVG, "reference")}


# ---------------------------------------------------------------------------
# ReLU, batch norm, the loss


@pytest.mark.parametrize("view", [False, True], ids=["contiguous", "edge: a view that skips"])
def test_relu_routes_match_the_reference(view, setting, rng):
    x = rng.standard_normal((2, 5, 6, 7))
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    x = x[:, :, :, ::2] if view else x

    def run():
        t = mf.Tensor(x, requires_grad=True)
        y = F.relu(t)
        y.backward(np.ones(y.shape))
        return [y.data, t.grad]

    fast, ref, taken = _both(run)
    for a, b in zip(fast, ref):
        np.testing.assert_array_equal(a, b)
    assert ((basic.RELU, "reference") if view else (basic.RELU, "zero planes")) in taken
    assert (basic.RELU_BACKWARD, "channels") in taken  # the gradient is contiguous either way


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_batch_norm_routes_match_the_reference(training, setting, rng):
    x = 3 + 2 * rng.standard_normal((2, 5, 6, 7))
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    stats = {}

    def run():
        mean, var = np.full(5, 0.5), np.full(5, 2.0)
        t, g, b = (mf.Tensor(a, requires_grad=True) for a in (x, gamma, beta))
        y = F.batch_norm(t, mean, var, g, b, training=training)
        y.backward(np.sin(np.arange(y.data.size)).reshape(y.shape))
        stats.setdefault("runs", []).append((mean, var))
        return [y.data, t.grad, g.grad, b.grad, mean, var]

    fast, ref, taken = _both(run)
    _close(fast, ref)
    assert (norm.FORWARD, "channels") in taken and (norm.BACKWARD, "channels") in taken


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class weights"])
def test_loss_routes_match_the_reference(weighted, setting, rng):
    scores = 5 * rng.standard_normal((2, 4, 5, 6))
    labels = rng.integers(0, 4, (2, 5, 6))
    labels[0, 0] = 255
    weight = np.array([0.5, 1.0, 2.0, 0.0]) if weighted else None

    def run():
        t = mf.Tensor(scores, requires_grad=True)
        out = F.softmax_cross_entropy(t, labels, weight=weight)
        out.backward()
        return [out.data, t.grad]

    fast, ref, taken = _both(run)
    _close(fast, ref)
    assert (loss.FORWARD, "in place") in taken


# ---------------------------------------------------------------------------
# Every route has a case; the splits at production sizes

COVERED = (
    {(op, route) for case in CONV_CASES for op, route in case[7].items()}
    | {(pool.MAX_BACKWARD, c[7]) for c in POOL_CASES}
    | {
        (pool.MAX_FORWARD, "blocks"),
        (pool.AVG, "reference"),
        (basic.RELU, "zero planes"),
        (basic.RELU, "reference"),
        (basic.RELU_BACKWARD, "channels"),
        (norm.FORWARD, "channels"),
        (norm.BACKWARD, "channels"),
        (loss.FORWARD, "in place"),
    }
)


def test_every_route_has_a_case():
    """Each CPU route of every dispatcher is taken by a case above (each case checks that it was). The
    references are taken by every case's reference run; the GPU routes by tests/test_gpu.py where there is one."""
    declared = {(op, route) for op, names in routes.ROUTES.items() for route in names if route != "gpu"}
    fast_only = {key for key in declared if key[1] != "reference"}
    assert fast_only - COVERED == set(), f"routes no test reaches: {sorted(fast_only - COVERED)}"
    assert len(routes.ROUTES) == 11


def test_a_net_split_over_two_threads_at_production_sizes_is_the_reference(rng):
    """The tiny-bn FCN-8s, float64, one forward and backward at a size where the tiles hold many rows, the
    upsampling runs on blocks and the pools on bands of rows, split over two threads: the parameters' gradients
    are the reference's to 1e-10 (the same sums in another order)."""
    from minifcn.models import FCN8s

    x = rng.standard_normal((2, 3, 48, 40))
    labels = rng.integers(0, 5, (2, 48, 40))
    mf.manual_seed(0)
    net = FCN8s(n_class=5, backbone="tiny-bn", dtype=np.float64).train()
    for name, p in net.named_parameters():
        if name.startswith("score"):  # zero at the start: made random, so that every layer gets a gradient
            p.data = rng.standard_normal(p.shape) * 0.01

    def run():
        net.zero_grad()
        out = F.softmax_cross_entropy(net(mf.Tensor(x)), labels)
        out.backward()
        return [out.data] + [p.grad.copy() for p in net.parameters() if p.grad is not None]

    with threads.using(2):
        fast, taken = _taken(run)
    with mf.reference():
        ref = run()
    _close(fast, ref, rtol=1e-10)
    for key in [(FWD, "tiles"), (FWD, "blocks"), (FWD, "padding skip"), (pool.MAX_BACKWARD, "tiled windows")]:
        assert key in taken, key
