"""conv2d and conv_transpose2d: forward against direct loops, gradients against central differences."""

import threading
import time

import numpy as np
import pytest
from reference_loops import conv2d_loop, conv_transpose2d_loop

import minifcn as mf
import minifcn.functional as F
from minifcn.functional import conv as conv_module
from minifcn.functional import threads
from minifcn.gradcheck import gradcheck

# (input N, C, H, W), (OC, KH, KW), stride, padding, dilation
CONV_CASES = [
    ((2, 3, 7, 6), (4, 3, 3), (1, 1), (1, 1), (1, 1)),
    ((1, 2, 9, 8), (3, 3, 2), (2, 1), (0, 2), (1, 2)),  # rectangular kernel, mixed stride and dilation
    ((2, 2, 8, 7), (2, 2, 3), (3, 3), (3, 2), (2, 1)),  # stride 3, padding 3
    ((1, 3, 5, 5), (2, 1, 1), (1, 1), (0, 0), (1, 1)),  # 1x1, the fc7 / score layer case
    ((1, 2, 1, 1), (3, 3, 3), (1, 1), (1, 1), (1, 1)),  # 1x1 input
    ((3, 1, 6, 5), (2, 5, 5), (2, 2), (2, 2), (1, 1)),  # batch 3
    ((1, 2, 4, 4), (2, 2, 2), (1, 1), (3, 3), (1, 1)),  # padding larger than the kernel span
    ((2, 2, 6, 7), (2, 3, 3), (2, 3), (1, 0), (2, 2)),
    ((2, 3, 8, 7), (2, 5, 4), (1, 1), (0, 0), (1, 1)),  # stride 1, dx much larger than dy (fc6): dx by col2im
]


def _random_conv(rng, shape, kshape, transposed=False):
    N, C, H, W = shape
    OC, KH, KW = kshape
    x = rng.standard_normal(shape)
    w = rng.standard_normal((C, OC, KH, KW) if transposed else (OC, C, KH, KW))
    b = rng.standard_normal(OC)
    return x, w, b


@pytest.mark.parametrize("shape, kshape, stride, padding, dilation", CONV_CASES)
def test_conv2d_forward_matches_direct_loop(rng, shape, kshape, stride, padding, dilation):
    x, w, b = _random_conv(rng, shape, kshape)
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), stride, padding, dilation)
    np.testing.assert_allclose(y.data, conv2d_loop(x, w, b, stride, padding, dilation), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape, kshape, stride, padding, dilation", CONV_CASES)
def test_conv2d_gradcheck(rng, shape, kshape, stride, padding, dilation):
    x, w, b = _random_conv(rng, shape, kshape)
    tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation), tensors)


def test_conv2d_float32_matches_float64(rng):
    x, w, b = _random_conv(rng, (2, 4, 9, 9), (5, 3, 3))
    y64 = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), padding=1).data
    y32 = F.conv2d(*(mf.Tensor(a.astype(np.float32)) for a in (x, w, b)), padding=1).data
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "shape, kshape, stride, padding, dilation",
    [
        ((1, 3, 4, 5), (2, 4, 4), (2, 2), (1, 1), (1, 1)),  # the FCN's 2x upsampling: kernel 2f, stride f
        ((2, 2, 3, 3), (3, 3, 2), (1, 2), (0, 1), (1, 1)),
        ((1, 2, 2, 3), (2, 3, 3), (3, 3), (0, 0), (1, 1)),
        ((1, 2, 3, 2), (2, 3, 3), (2, 1), (1, 1), (2, 1)),  # dilated
        ((2, 1, 1, 1), (2, 16, 16), (8, 8), (0, 0), (1, 1)),  # a 1x1 map upsampled by 8
        ((1, 3, 4, 4), (2, 3, 3), (1, 1), (1, 1), (1, 1)),  # stride 1: computed as a convolution
    ],
)
def test_conv_transpose2d_forward_and_gradcheck(rng, shape, kshape, stride, padding, dilation):
    x, w, b = _random_conv(rng, shape, kshape, transposed=True)
    y = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), stride, padding, dilation)
    np.testing.assert_allclose(
        y.data, conv_transpose2d_loop(x, w, b, stride, padding, dilation), rtol=1e-10, atol=1e-10
    )
    tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, dilation), tensors)


def test_conv_transpose2d_output_size_is_the_papers(rng):
    # out = (H - 1) * stride - 2 * padding + KH: FCN-32s's upscore (kernel 64, stride 32) on a 2x3 map
    x, w, _ = _random_conv(rng, (1, 2, 2, 3), (2, 64, 64), transposed=True)
    y = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), stride=32)
    assert y.shape == (1, 2, (2 - 1) * 32 + 64, (3 - 1) * 32 + 64)


@pytest.mark.parametrize("stride, padding, dilation", [((1, 1), (1, 1), (1, 1)), ((2, 3), (1, 0), (1, 2))])
def test_conv_input_grad_is_transposed_conv(rng, stride, padding, dilation):
    x, w, _ = _random_conv(rng, (2, 3, 9, 8), (4, 3, 3))
    tx = mf.Tensor(x, requires_grad=True)
    y = F.conv2d(tx, mf.Tensor(w), stride=stride, padding=padding, dilation=dilation)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    up = F.conv_transpose2d(mf.Tensor(gy), mf.Tensor(w), stride=stride, padding=padding, dilation=dilation)
    # The transposed convolution may be smaller where the forward's floor dropped rows: those get no gradient.
    h, w_ = up.shape[2:]
    np.testing.assert_allclose(tx.grad[:, :, :h, :w_], up.data, rtol=1e-10, atol=1e-10)
    assert np.all(tx.grad[:, :, h:, :] == 0) and np.all(tx.grad[:, :, :, w_:] == 0)


def test_transposed_conv_input_grad_is_conv(rng):
    x, w, _ = _random_conv(rng, (1, 3, 4, 5), (2, 4, 4), transposed=True)
    tx = mf.Tensor(x, requires_grad=True)
    y = F.conv_transpose2d(tx, mf.Tensor(w), stride=2, padding=1)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    np.testing.assert_allclose(tx.grad, F.conv2d(mf.Tensor(gy), mf.Tensor(w), stride=2, padding=1).data, rtol=1e-10)


@pytest.mark.parametrize("padding, dilation", [((1, 1), (1, 1)), ((3, 0), (2, 1)), ((100, 2), (1, 2))])
def test_stride1_transposed_conv_equals_flipped_kernel_conv(rng, padding, dilation):
    # Both ways of computing a stride-1 transposed convolution agree, including a negative
    # flipped padding (a crop), as for conv1_1's pad 100.
    w = rng.standard_normal((4, 3, 3, 2))
    H, W = 9, 8
    OH = H + 2 * padding[0] - dilation[0] * 2
    OW = W + 2 * padding[1] - dilation[1] * 1
    gy = rng.standard_normal((2, 4, OH, OW))
    as_conv = conv_module._transposed_conv_as_conv(gy, w, padding, dilation)
    by_col2im = conv_module._transposed_conv_by_col2im(gy, w, (H, W), (1, 1), padding, dilation)
    assert as_conv.shape == (2, 3, H, W)
    np.testing.assert_allclose(as_conv, by_col2im, rtol=1e-10, atol=1e-10)


def test_im2col_columns_hold_the_windows(rng):
    x = rng.standard_normal((2, 3, 5, 6))
    cols = F.im2col(x, (2, 3), (1, 2), (1, 1), (0, 4), 2)  # output rows 0..3, 2 output columns
    assert cols.shape == (3 * 2 * 3, 2 * 4 * 2)
    c, kh, kw, n, i, j = 1, 1, 2, 1, 3, 1
    row = (c * 2 + kh) * 3 + kw
    col = (n * 4 + i) * 2 + j
    assert cols[row, col] == x[n, c, i * 1 + kh, j * 2 + kw]


@pytest.mark.parametrize(
    "kernel, stride",
    [
        ((4, 6), (2, 3)),  # a whole number of strides: whole blocks
        ((16, 16), (8, 8)),
        ((2, 3), (1, 2)),  # the last block of a row holds one tap of two
        ((7, 7), (2, 2)),  # GoogLeNet's first convolution
        ((11, 11), (4, 4)),  # AlexNet's
        ((63, 5), (32, 3)),  # upsampling by 32 with an odd kernel
        ((1, 2), (3, 3)),  # a kernel smaller than its stride
        ((3, 3), (1, 1)),  # stride 1: one tap at a time
    ],
)
@pytest.mark.parametrize("room", [True, False], ids=["room for blocks", "exact reach"])
def test_im2col_every_entry_is_its_window_pixel(rng, kernel, stride, room):
    # Every entry against the formula, for taps copied in blocks of sh x sw (whole or, where the kernel is not a
    # whole number of strides, partial ones) and, where the input reaches no further than the windows, one at a
    # time; and col2im is its adjoint there too.
    N, C, R, OW = 2, 3, 3, 4
    rows = (1, 1 + R)
    if room:
        shape = [conv_module.padded_extent(n, k, s, 1) for n, k, s in zip((rows[1], OW), kernel, stride)]
        assert conv_module._blocks_fit(shape, kernel, stride, (1, 1), (rows[1], OW)) == (stride != (1, 1))
    else:  # blocks fit here only where the kernel is a whole number of strides
        shape = [(n - 1) * s + k for n, k, s in zip((rows[1], OW), kernel, stride)]
    x = rng.standard_normal((N, C, *shape))
    cols = F.im2col(x, kernel, stride, (1, 1), rows, OW).reshape(C, *kernel, N, R, OW)
    expected = np.empty_like(cols)
    for c, kh, kw, n, i, j in np.ndindex(*cols.shape):
        expected[c, kh, kw, n, i, j] = x[n, c, (rows[0] + i) * stride[0] + kh, j * stride[1] + kw]
    np.testing.assert_array_equal(cols, expected)
    g = rng.standard_normal(cols.shape)
    back = np.zeros_like(x)
    F.col2im(g, back, kernel, stride, (1, 1), rows, OW)
    assert np.isclose((cols * g).sum(), (x * back).sum(), rtol=1e-12)


def test_col2im_is_the_adjoint_of_im2col(rng):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: the defining property of the backward pass.
    x = rng.standard_normal((2, 3, 7, 8))
    args = ((3, 2), (2, 1), (1, 2), (0, 3), 6)
    cols = F.im2col(x, *args)
    c = rng.standard_normal(cols.shape)
    back = np.zeros_like(x)
    F.col2im(c, back, *args)
    assert np.isclose((cols * c).sum(), (x * back).sum(), rtol=1e-12)


@pytest.mark.parametrize("kernel, dilation", [((3, 3), (1, 1)), ((3, 2), (2, 3)), ((1, 1), (1, 1))])
def test_flat_columns_are_im2col_plus_wrap_around_columns(rng, kernel, dilation):
    # im2col_flat's first OW columns of every output row are im2col's columns, exactly.
    N, C, H, W = 2, 3, 9, 8
    x = rng.standard_normal((N, C, H, W))
    span_h, span_w = (d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    OW, rows = W - span_w + 1, (1, H - span_h + 1)
    with_spare_row = np.concatenate([x, np.zeros((N, C, 1, W))], axis=2)
    flat = F.im2col_flat(with_spare_row, kernel, dilation, rows)
    R = rows[1] - rows[0]
    assert flat.shape == (C * kernel[0] * kernel[1], N * R * W)
    kept = flat.reshape(-1, N, R, W)[..., :OW].reshape(-1, N * R * OW)
    np.testing.assert_array_equal(kept, F.im2col(x, kernel, (1, 1), dilation, rows, OW))


@pytest.mark.parametrize("flat_max_extra", [0.0, 100.0])  # never, and always, the flat columns
@pytest.mark.parametrize(
    "shape, kshape, padding, dilation",
    [
        ((2, 3, 7, 6), (4, 3, 3), (1, 1), (1, 1)),
        ((1, 2, 9, 8), (3, 3, 2), (0, 2), (1, 2)),
        ((1, 2, 4, 4), (2, 2, 2), (3, 3), (1, 1)),
    ],
)
def test_stride1_conv_either_columns_match_loops_and_gradients(
    rng, monkeypatch, flat_max_extra, shape, kshape, padding, dilation
):
    # Both ways of making a stride-1 convolution's columns, in float64: forward against the direct loop,
    # gradients (input, weight, bias; the input's through the flipped-kernel convolution) by central differences.
    monkeypatch.setattr(conv_module, "FLAT_MAX_EXTRA", flat_max_extra)
    x, w, b = _random_conv(rng, shape, kshape)
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), 1, padding, dilation)
    np.testing.assert_allclose(y.data, conv2d_loop(x, w, b, (1, 1), padding, dilation), rtol=1e-10, atol=1e-10)
    tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, padding, dilation), tensors)


@pytest.mark.parametrize(
    "shape, kshape, padding, dilation",
    [
        ((2, 3, 5, 4), (4, 3, 3), (9, 9), (1, 1)),  # conv1_1's case: most windows in the padding
        ((1, 2, 6, 5), (3, 3, 2), (7, 1), (2, 1)),  # beyond the reach in height only, dilated
        ((1, 2, 4, 6), (2, 2, 3), (1, 4), (1, 2)),  # in width only
    ],
)
def test_windows_wholly_in_the_padding(rng, monkeypatch, shape, kshape, padding, dilation):
    # Output rows whose windows read only padding are the bias; the convolution runs with padding span - 1
    # and the border is filled in. In float64 the forward pass equals the direct loop (the border equal to b
    # exactly), and the gradients pass central differences. The spy checks the smaller padding was used.
    used = []
    forward = conv_module._conv_forward
    monkeypatch.setattr(conv_module, "_conv_forward", lambda x, w, s, p, *a: used.append(p) or forward(x, w, s, p, *a))
    x, w, b = _random_conv(rng, shape, kshape)
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), 1, padding, dilation).data
    np.testing.assert_allclose(y, conv2d_loop(x, w, b, (1, 1), padding, dilation), rtol=1e-10, atol=1e-10)
    reach = [(k - 1) * d for k, d in zip(kshape[1:], dilation)]
    assert used[-1] == tuple(min(p, r) for p, r in zip(padding, reach))
    th, tw = (max(p - r, 0) for p, r in zip(padding, reach))
    border = np.ones(y.shape, dtype=bool)
    border[:, :, th : y.shape[2] - th, tw : y.shape[3] - tw] = False
    np.testing.assert_array_equal(y[border], np.broadcast_to(b.reshape(1, -1, 1, 1), y.shape)[border])
    tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, padding, dilation), tensors)


@pytest.mark.parametrize(
    "shape, kshape, stride, padding",
    [
        ((2, 3, 9, 11), (2, 4, 4), (2, 2), (1, 1)),  # upsampling's 2f by f
        ((1, 2, 13, 10), (3, 6, 4), (3, 2), (2, 0)),  # three strides down, two across
        ((2, 2, 18, 17), (2, 8, 8), (4, 4), (0, 3)),  # rows and columns past the last window: no gradient
    ],
)
def test_kernels_a_whole_number_of_strides_run_on_blocks(rng, monkeypatch, shape, kshape, stride, padding):
    # Such a convolution runs at stride 1 on the input's s x s blocks made channels; its transposed convolution
    # likewise, put back into pixels. In float64, both ops against the direct loops, and their gradients (input,
    # weight, bias) by central differences; the spy checks that the blocks were used, forward and backward.
    blocked = []
    to_blocks = conv_module._space_to_depth
    monkeypatch.setattr(conv_module, "_space_to_depth", lambda x, s: blocked.append(s) or to_blocks(x, s))
    x, w, b = _random_conv(rng, shape, kshape)
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), stride, padding).data
    np.testing.assert_allclose(y, conv2d_loop(x, w, b, stride, padding, (1, 1)), rtol=1e-10, atol=1e-10)
    assert blocked
    tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), tensors)
    xt, wt, bt = _random_conv(rng, (shape[0], kshape[0], 4, 3), (shape[1], *kshape[1:]), transposed=True)
    yt = F.conv_transpose2d(mf.Tensor(xt), mf.Tensor(wt), mf.Tensor(bt), stride, padding).data
    np.testing.assert_allclose(yt, conv_transpose2d_loop(xt, wt, bt, stride, padding, (1, 1)), rtol=1e-10, atol=1e-10)
    tensors = [mf.Tensor(a, requires_grad=True) for a in (xt, wt, bt)]
    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding), tensors)
    assert len(blocked) > 6


def test_flat_and_strided_columns_give_the_same_gradients(rng, monkeypatch):
    # The same convolution with either columns, and the flat ones banded one output row at a time:
    # equal to rounding in float64.
    x, w, b = _random_conv(rng, (2, 3, 11, 9), (4, 3, 3))
    gy = rng.standard_normal((2, 4, 11, 9))
    results = []
    for flat_max_extra, budget in ((0.0, 2**40), (100.0, 2**40), (100.0, 1)):
        monkeypatch.setattr(conv_module, "FLAT_MAX_EXTRA", flat_max_extra)
        monkeypatch.setattr(conv_module, "IM2COL_BUDGET_BYTES", budget)
        tensors = [mf.Tensor(a.copy(), requires_grad=True) for a in (x, w, b)]
        y = F.conv2d(*tensors, padding=1)
        y.backward(gy)
        results.append((y.data, *(t.grad for t in tensors)))
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


def test_bands_of_rows_give_the_same_result(rng, monkeypatch):
    # Over IM2COL_BUDGET_BYTES the columns are built a band of output rows at a time.
    x, w, b = _random_conv(rng, (2, 3, 11, 9), (4, 3, 3))
    grads = {}
    for budget in (2**40, 1):  # one band; one output row per band
        monkeypatch.setattr(conv_module, "IM2COL_BUDGET_BYTES", budget)
        tensors = [mf.Tensor(a.copy(), requires_grad=True) for a in (x, w, b)]
        y = F.conv2d(*tensors, stride=(2, 1), padding=1)
        y.backward(np.ones(y.shape))
        grads[budget] = (y.data, *(t_.grad for t_ in tensors))
    for a, b_ in zip(grads[2**40], grads[1]):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


def test_banded_transposed_conv_matches(rng, monkeypatch):
    x, w, _ = _random_conv(rng, (1, 3, 6, 5), (2, 4, 4), transposed=True)
    full = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), stride=2, padding=1).data
    monkeypatch.setattr(conv_module, "IM2COL_BUDGET_BYTES", 1)
    banded = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), stride=2, padding=1).data
    np.testing.assert_allclose(full, banded, rtol=1e-12)


def _on_threads(monkeypatch, parts, tiles):
    """Every CPU product split over ``parts`` threads; with ``tiles``, every flat convolution in tiles of one row."""
    monkeypatch.setattr(threads, "blas_threads", lambda: parts)
    monkeypatch.setattr(threads, "count", lambda: parts)
    monkeypatch.setattr(threads, "MIN_PRODUCT", 0)
    monkeypatch.setattr(threads, "OWN_THREAD_PRODUCT", 0)
    monkeypatch.setattr(threads, "MIN_BYTES", 0)
    monkeypatch.setattr(conv_module, "TILE_MIN_BYTES", 0 if tiles else 2**60)
    monkeypatch.setattr(conv_module, "TILE_BYTES", 1)


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("tiles", [False, True])
@pytest.mark.parametrize(
    "shape, kshape, padding, dilation",
    [
        ((3, 2, 7, 6), (4, 3, 3), (1, 1), (1, 1)),  # three images, seven rows: tiles split unevenly over the threads
        ((2, 3, 5, 9), (2, 3, 2), (2, 0), (2, 1)),
        ((1, 3, 5, 5), (2, 1, 1), (0, 0), (1, 1)),
    ],
)
def test_tiles_and_split_products_match_loops_and_gradients(
    rng, monkeypatch, parts, tiles, shape, kshape, padding, dilation
):
    # The few-channel convolutions run in tiles of output rows spread over the threads, and every other product
    # has its columns split over them: forced here onto 1 to 3 threads, in float64, the forward pass equals the
    # direct loop and the gradients (input by the flipped-kernel convolution, weight summed over the tiles,
    # bias) pass central differences.
    _on_threads(monkeypatch, parts, tiles)
    monkeypatch.setattr(conv_module, "FLAT_MAX_EXTRA", 100.0)
    x, w, b = _random_conv(rng, shape, kshape)
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), 1, padding, dilation)
    np.testing.assert_allclose(y.data, conv2d_loop(x, w, b, (1, 1), padding, dilation), rtol=1e-10, atol=1e-10)
    tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, padding, dilation), tensors)


@pytest.mark.parametrize("parts", [2, 3])
def test_strided_and_transposed_convolutions_on_threads(rng, monkeypatch, parts):
    # Their products split over the threads, and col2im adding each range of channels back on its own thread:
    # the direct loops, and central differences.
    _on_threads(monkeypatch, parts, tiles=False)
    x, w, b = _random_conv(rng, (2, 3, 8, 7), (4, 3, 3))
    y = F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), (2, 1), (1, 2))
    np.testing.assert_allclose(y.data, conv2d_loop(x, w, b, (2, 1), (1, 2), (1, 1)), rtol=1e-10, atol=1e-10)
    tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, (2, 1), (1, 2)), tensors)
    x, w, b = _random_conv(rng, (2, 3, 4, 5), (4, 4, 4), transposed=True)
    y = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), 2, 1)
    np.testing.assert_allclose(y.data, conv_transpose2d_loop(x, w, b, (2, 2), (1, 1), (1, 1)), rtol=1e-10, atol=1e-10)
    tensors = [mf.Tensor(a, requires_grad=True) for a in (x, w, b)]
    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1), tensors)


def test_tiles_on_threads_give_one_result_every_run(rng, monkeypatch):
    # Each thread takes a fixed range of the tiles and the weight gradient adds their parts in a fixed order, so
    # two runs agree bit for bit (float32, where the order of additions shows); and they agree with one band on
    # one thread to float32's rounding.
    x, w, b = (a.astype(np.float32) for a in _random_conv(rng, (4, 8, 30, 28), (8, 3, 3)))
    gy = rng.standard_normal((4, 8, 30, 28)).astype(np.float32)

    def run():
        tensors = [mf.Tensor(a.copy(), requires_grad=True) for a in (x, w, b)]
        y = F.conv2d(*tensors, padding=1)
        y.backward(gy)
        return [y.data, *(t.grad for t in tensors)]

    one_band = run()
    _on_threads(monkeypatch, 2, tiles=True)
    first, second = run(), run()
    for a, b_, c in zip(first, second, one_band):
        np.testing.assert_array_equal(a, b_)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-4 * np.abs(c).max())


def test_pad2d_places_cuts_and_fills_a_given_array(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    padded = F.geometry.pad2d(x, 1, 2, 6, 6, value=-1.0)  # two columns cut off the right
    assert padded.shape == (2, 3, 6, 6)
    np.testing.assert_array_equal(padded[:, :, 1:5, 2:6], x[:, :, :, :4])
    assert (padded[:, :, 0] == -1).all() and (padded[:, :, 5] == -1).all() and (padded[..., :2] == -1).all()
    assert F.geometry.pad2d(x, 0, 0, 4, 5) is x  # nothing to add
    out = np.full((2, 3, 4, 5), np.nan)
    assert F.geometry.pad2d(x, 0, 0, 4, 5, out=out) is out  # a given array is always filled
    np.testing.assert_array_equal(out, x)
    out = np.full((1, 3, 3, 7), np.nan)  # rows 1..2 of image 1, padded by one on each side, as a tile's slab
    F.geometry.pad2d(x[1:2, :, 1:3], 1, 1, 3, 7, out=out)
    expected = np.zeros((1, 3, 3, 7))
    expected[0, :, 1:3, 1:6] = x[1, :, 1:3]
    np.testing.assert_array_equal(out, expected)


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


def test_input_grad_skipped_when_input_needs_none(rng):
    x, w, b = _random_conv(rng, (1, 3, 5, 5), (2, 3, 3))
    tx, tw = mf.Tensor(x), mf.Tensor(w, requires_grad=True)
    F.conv2d(tx, tw, padding=1).backward(np.ones((1, 2, 5, 5)))
    assert tx.grad is None and tw.grad.shape == w.shape


# ---------------------------------------------------------------------------
# Bad input


def test_conv2d_rejects_wrong_dimensions():
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\), got shape \(3, 5, 5\)"):
        F.conv2d(mf.Tensor(np.zeros((3, 5, 5))), mf.Tensor(np.zeros((2, 3, 3, 3))))
    with pytest.raises(ValueError, match=r"weight must be 4-D"):
        F.conv2d(mf.Tensor(np.zeros((1, 3, 5, 5))), mf.Tensor(np.zeros((3, 3, 3))))


def test_conv2d_channel_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"3 channels \(shape \(1, 3, 5, 5\)\).*\(8, 4, 3, 3\).*expects 4"):
        F.conv2d(mf.Tensor(np.zeros((1, 3, 5, 5))), mf.Tensor(np.zeros((8, 4, 3, 3))))


def test_conv_transpose2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"2 channels.*\(3, 5, 4, 4\).*expects 3"):
        F.conv_transpose2d(mf.Tensor(np.zeros((1, 2, 5, 5))), mf.Tensor(np.zeros((3, 5, 4, 4))))


def test_conv2d_kernel_larger_than_padded_input():
    with pytest.raises(
        ValueError, match=r"spans 7 pixels in height, more than the padded input: input 3x9 with padding \(1, 1\)"
    ):
        F.conv2d(mf.Tensor(np.zeros((1, 1, 3, 9))), mf.Tensor(np.zeros((1, 1, 7, 3))), padding=1)
    with pytest.raises(ValueError, match=r"spans 5 pixels in width"):  # dilation counts
        F.conv2d(mf.Tensor(np.zeros((1, 1, 9, 4))), mf.Tensor(np.zeros((1, 1, 3, 3))), dilation=2)


def test_conv2d_rejects_mixed_dtypes_and_bad_bias():
    x = mf.Tensor(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(TypeError, match="float32 and float64"):
        F.conv2d(x, mf.Tensor(np.zeros((3, 2, 3, 3))))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.conv2d(x, mf.Tensor(np.zeros((3, 2, 3, 3), np.float32)), mf.Tensor(np.zeros(4, np.float32)))


@pytest.mark.parametrize("kwargs", [{"stride": 0}, {"padding": -1}, {"dilation": 0}])
def test_conv2d_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="need stride >= 1"):
        F.conv2d(mf.Tensor(np.zeros((1, 1, 5, 5))), mf.Tensor(np.zeros((1, 1, 3, 3))), **kwargs)


def test_conv2d_rejects_non_int_stride():
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        F.conv2d(mf.Tensor(np.zeros((1, 1, 5, 5))), mf.Tensor(np.zeros((1, 1, 3, 3))), stride=1.5)


def test_conv_transpose2d_output_too_small():
    # (1 - 1) * 1 - 2 * 2 + 3 = -1 rows
    with pytest.raises(ValueError, match=r"output would be -1x-1 for input 1x1, kernel 3x3"):
        F.conv_transpose2d(mf.Tensor(np.zeros((1, 1, 1, 1))), mf.Tensor(np.zeros((1, 1, 3, 3))), padding=2)
