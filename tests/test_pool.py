"""max_pool2d and avg_pool2d: Caffe/PyTorch geometry, forward against loops, gradients."""

import numpy as np
import pytest
from reference_loops import avg_pool2d_loop, max_pool2d_grad_loop, max_pool2d_loop, window_starts

import minifcn as mf
import minifcn.functional as F
from minifcn.functional.pool import MaxPool2d
from minifcn.gradcheck import gradcheck

# (N, C, H, W), kernel, stride, padding, dilation, ceil_mode
POOL_CASES = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ((1, 2, 7, 9), (2, 2), (2, 2), (0, 0), (1, 1), True),  # the FCN pool: odd sizes keep their last row
    ((2, 2, 5, 6), (3, 3), (2, 2), (1, 1), (1, 1), True),  # last window starts in the input, hangs over the padding
    ((1, 2, 6, 5), (3, 2), (3, 2), (1, 1), (1, 1), True),  # rectangular
    ((1, 1, 1, 1), (2, 2), (2, 2), (0, 0), (1, 1), True),  # 1x1 input, window larger than it
    ((1, 2, 2, 2), (3, 3), (2, 2), (1, 1), (1, 1), True),
    ((2, 1, 9, 7), (3, 3), (1, 2), (1, 0), (2, 1), False),  # dilation
    ((1, 2, 5, 5), (2, 3), (3, 1), (1, 1), (1, 1), True),  # stride 3
    ((1, 1, 4, 4), (3, 3), (2, 2), (0, 0), (1, 1), True),  # ceil adds a window that hangs over the end
    ((2, 1, 5, 3), (3, 3), (3, 3), (1, 1), (1, 1), True),  # rounding up would start a window in the right padding
    ((1, 2, 1, 3), (2, 2), (2, 2), (1, 1), (1, 1), True),  # the only window starts in the left padding
]


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, ceil_mode", POOL_CASES)
def test_max_pool2d_forward_matches_loop_and_gradcheck(rng, size, kernel, stride, padding, dilation, ceil_mode):
    x = rng.standard_normal(size)
    y = F.max_pool2d(mf.Tensor(x), kernel, stride, padding, dilation, ceil_mode)
    np.testing.assert_array_equal(y.data, max_pool2d_loop(x, kernel, stride, padding, dilation, ceil_mode))
    t = mf.Tensor(x, requires_grad=True)
    gradcheck(lambda t: F.max_pool2d(t, kernel, stride, padding, dilation, ceil_mode), [t])


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation, ceil_mode", [c for c in POOL_CASES if c[4] == (1, 1)]
)
def test_avg_pool2d_forward_matches_loop_and_gradcheck(rng, size, kernel, stride, padding, dilation, ceil_mode):
    x = rng.standard_normal(size)
    y = F.avg_pool2d(mf.Tensor(x), kernel, stride, padding, ceil_mode)
    np.testing.assert_allclose(y.data, avg_pool2d_loop(x, kernel, stride, padding, ceil_mode), rtol=1e-12)
    t = mf.Tensor(x, requires_grad=True)
    gradcheck(lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode), [t])


def test_pool_output_size_matches_window_enumeration():
    for size in range(1, 12):
        for k in (1, 2, 3):
            for s in (1, 2, 3):
                for p in range(0, k // 2 + 1):
                    for d in (1, 2):
                        for ceil in (False, True):
                            expected = len(window_starts(size, k, s, p, d, ceil))
                            if expected == 0:
                                continue
                            assert F.pool_output_size(size, k, s, p, d, ceil) == expected, (size, k, s, p, d, ceil)


def test_pool_output_sizes_agree_with_pytorch():
    # (size, kernel, stride, padding, ceil_mode) -> output size, as torch.nn.functional.max_pool2d 2.13 printed it
    pytorch = {
        (5, 2, 2, 0, True): 3,
        (5, 2, 2, 0, False): 2,
        (4, 3, 2, 1, True): 3,
        (5, 3, 2, 1, True): 3,
        (6, 3, 2, 1, True): 4,
        (6, 3, 2, 1, False): 3,
        (1, 2, 2, 0, True): 1,
        (698, 2, 2, 0, True): 349,
        (175, 2, 2, 0, True): 88,
        (4, 3, 3, 0, True): 2,
        (7, 3, 3, 1, True): 3,
        (2, 3, 2, 1, True): 2,
        (2, 3, 2, 0, True): 1,
        (5, 3, 3, 1, True): 2,
        (3, 2, 2, 1, True): 2,
        (8, 2, 4, 1, True): 3,
    }
    for (size, k, s, p, ceil), out in pytorch.items():
        assert F.pool_output_size(size, k, s, p, 1, ceil) == out, (size, k, s, p, ceil)


def test_ceil_mode_last_window_never_starts_in_right_padding():
    # size 5, kernel 3, stride 3, padding 1: rounding up gives a 3rd window at padded position 6,
    # which is input position 5: past the input, in the right padding. It is dropped.
    assert -(-(5 + 2 - 3) // 3) + 1 == 3
    assert F.pool_output_size(5, 3, 3, 1, 1, ceil_mode=True) == 2
    x = mf.Tensor(np.arange(25.0).reshape(1, 1, 5, 5))
    assert F.max_pool2d(x, 3, stride=3, padding=1, ceil_mode=True).shape == (1, 1, 2, 2)


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties():
    x = mf.Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    F.max_pool2d(x, 2).backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(x.grad, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_max_pool_overlapping_windows_add_their_gradients():
    x = np.zeros((1, 1, 1, 3))
    x[0, 0, 0, 1] = 1.0  # the middle pixel is the max of both windows
    t = mf.Tensor(x, requires_grad=True)
    F.max_pool2d(t, (1, 2), stride=1).backward(np.array([[[[2.0, 3.0]]]]))
    np.testing.assert_array_equal(t.grad, [[[[0.0, 5.0, 0.0]]]])


def test_max_pool_ties_go_to_the_first_maximum_in_window_order():
    # Window [[0, 3], [3, 1]]: taps 1 and 2 tie; the gradient goes to tap 1, (0, 1), as in Caffe and PyTorch.
    x = mf.Tensor(np.array([[[[0.0, 3.0], [3.0, 1.0]]]]), requires_grad=True)
    F.max_pool2d(x, 2).backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(x.grad, [[[[0.0, 5.0], [0.0, 0.0]]]])


def test_max_pool_nan_gradient_goes_to_the_last_nan_as_the_cuda_kernel():
    x = mf.Tensor(np.array([[[[np.nan, 1.0], [np.nan, 2.0]]]]), requires_grad=True)
    y = F.max_pool2d(x, 2)
    assert np.isnan(y.data).all()
    y.backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(x.grad, [[[[0.0, 0.0], [5.0, 0.0]]]])


def test_max_pool_routes_inf_and_nan_gradients_to_the_winner_alone():
    # Non-winners get exactly 0, never inf * 0 = NaN; the winners get the gradient's own value.
    x = mf.Tensor(np.array([[[[1.0, 3.0, 0.0, 0.0], [2.0, 0.0, 0.0, 5.0]]]]), requires_grad=True)
    F.max_pool2d(x, 2).backward(np.array([[[[np.inf, np.nan]]]]))
    np.testing.assert_array_equal(x.grad, [[[[0.0, np.inf, 0.0, 0.0], [0.0, 0.0, 0.0, np.nan]]]])
    assert not np.signbit(x.grad[np.isfinite(x.grad)]).any()  # +0.0, as where(mask, g, 0)


def test_max_pool_without_gradients_keeps_no_argmax(rng):
    # Under no_grad (evaluation) the winning taps are not computed; the maxima are the same.
    x = rng.standard_normal((2, 3, 7, 9))
    op = MaxPool2d(2, 2, ceil_mode=True)
    with mf.no_grad():
        y = op(mf.Tensor(x, requires_grad=True)).data
    assert op.argmax is None
    np.testing.assert_array_equal(y, max_pool2d_loop(x, (2, 2), (2, 2), (0, 0), (1, 1), True))


def test_max_pool_propagates_nan():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 3, 0] = np.nan
    y = F.max_pool2d(mf.Tensor(x), 2).data
    assert np.isnan(y[0, 0, 1, 0]) and not np.isnan(y[0, 0, 0, 0])


def test_avg_pool_counts_padding_in_divisor():
    y = F.avg_pool2d(mf.Tensor(np.ones((1, 1, 2, 2))), 2, stride=2, padding=1)
    np.testing.assert_allclose(y.data, np.full((1, 1, 2, 2), 0.25))


def test_pool_rejects_bad_input():
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\), got shape \(4, 4\)"):
        F.max_pool2d(mf.Tensor(np.zeros((4, 4))), 2)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) must be at most half the kernel \(3, 3\)"):
        F.max_pool2d(mf.Tensor(np.zeros((1, 1, 8, 8))), 3, padding=2)
    with pytest.raises(ValueError, match=r"spans 3 pixels in height, more than the padded input: input 2x5"):
        F.max_pool2d(mf.Tensor(np.zeros((1, 1, 2, 5))), 3)
    with pytest.raises(ValueError, match="window 0 .* sees only padding"):
        F.max_pool2d(mf.Tensor(np.zeros((1, 1, 6, 1))), 2, stride=1, padding=1, dilation=2)
    with pytest.raises(TypeError, match="floating point"):
        F.avg_pool2d(mf.Tensor(np.zeros((1, 1, 4, 4), np.int64)), 2)


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2), (3, 1)])
@pytest.mark.parametrize("block_bytes", [100, 2000])  # bands of one or two rows of a channel; a few channels
def test_max_pooling_in_blocks_on_threads_is_the_same(kernel, stride, block_bytes, monkeypatch, rng):
    """Large maps are pooled in blocks (bands of rows, or groups of channels) shared out over threads: the
    values and gradients of direct loops, ties included, and NaN where one block puts it."""
    from minifcn.functional.cpu import pool, threads

    x = rng.standard_normal((2, 7, 13, 12))
    with_nan = x.copy()
    with_nan[1, 4, 3, 5] = np.nan
    ties = rng.integers(0, 3, size=x.shape).astype(np.float64)  # most windows hold their maximum twice or more
    g = rng.standard_normal((2, 7) + F.max_pool2d(mf.Tensor(x), kernel, stride, ceil_mode=True).shape[2:])

    def pool2d(a):
        with mf.no_grad():
            return F.max_pool2d(mf.Tensor(a), kernel, stride, ceil_mode=True).data

    def routed(a):  # where each window's gradient goes: to its first maximum
        t = mf.Tensor(a, requires_grad=True)
        F.max_pool2d(t, kernel, stride, ceil_mode=True).backward(g)
        return t.grad

    whole = pool2d(with_nan), routed(with_nan), routed(ties)  # one block, one thread
    monkeypatch.setattr(pool, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(threads, "MIN_BYTES", 0)  # split even this small map
    monkeypatch.setattr(threads, "count", lambda: 3)
    geometry = (kernel, kernel), (stride, stride), (0, 0), (1, 1), True
    np.testing.assert_array_equal(pool2d(x), max_pool2d_loop(x, *geometry))
    # Each block also finds its windows' winners and routes their gradients there (non-overlapping windows
    # written, overlapping ones added).
    for a in (x, ties):
        np.testing.assert_allclose(routed(a), max_pool2d_grad_loop(a, g, *geometry), rtol=1e-14)
    split = pool2d(with_nan), routed(with_nan), routed(ties)
    for a, b in zip(split, whole):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(split[0]).sum() > 0


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, ceil_mode", POOL_CASES)
@pytest.mark.parametrize("blocks", [False, True], ids=["whole", "in blocks on threads"])
def test_max_pool_backward_writes_every_pixel_it_does_not_zero(
    rng, size, kernel, stride, padding, dilation, ceil_mode, blocks, monkeypatch
):
    """Where the windows tile the padded input exactly (the FCN pools), backward starts from an uninitialised
    array and writes every pixel; elsewhere it starts from zeros. Made visible here: uninitialised memory
    reads as NaN, and the gradient must still be the direct loop's, also when bands of rows are split over
    threads."""
    from minifcn.functional.cpu import pool, threads

    if blocks:
        monkeypatch.setattr(pool, "BLOCK_BYTES", 16)  # a row of a plane per block
        monkeypatch.setattr(threads, "MIN_BYTES", 0)
        monkeypatch.setattr(threads, "count", lambda: 3)
    x = rng.standard_normal(size)
    t = mf.Tensor(x, requires_grad=True)
    y = F.max_pool2d(t, kernel, stride, padding, dilation, ceil_mode)
    g = rng.standard_normal(y.shape)
    empty = np.empty
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pool.np, "empty", lambda shape, dtype=float: np.full(shape, np.nan, dtype))
        y.backward(g)
    assert np.empty is empty
    expected = max_pool2d_grad_loop(x, g, kernel, stride, padding, dilation, ceil_mode)
    np.testing.assert_allclose(t.grad, expected, rtol=1e-14, atol=0)  # overlapping windows add in another order
