"""conv2d and conv_transpose2d: forward against direct loops, gradients against central differences."""

import numpy as np
import pytest
from reference_loops import conv2d_loop, conv_transpose2d_loop

import minifcn as mf
import minifcn.functional as F
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


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation",
    [((3, 3), (1, 1), (1, 1), (1, 1)), ((2, 3), (1, 2), (1, 0), (1, 1)), ((3, 2), (2, 3), (2, 1), (2, 1))],
)
def test_im2col_every_entry_is_its_window_pixel(rng, kernel, stride, padding, dilation):
    # Every entry of the columns against the formula, zeros where a tap reads the padding.
    N, C, H, W = 2, 3, 7, 8
    x = rng.standard_normal((N, C, H, W))
    OH, OW = (F.conv_output_size(n, k, s, p, d) for n, k, s, p, d in zip((H, W), kernel, stride, padding, dilation))
    cols = F.im2col(x, kernel, stride, padding, dilation).reshape(C, *kernel, N, OH, OW)
    expected = np.zeros_like(cols)
    for c, kh, kw, n, i, j in np.ndindex(*cols.shape):
        r, q = i * stride[0] - padding[0] + kh * dilation[0], j * stride[1] - padding[1] + kw * dilation[1]
        if 0 <= r < H and 0 <= q < W:
            expected[c, kh, kw, n, i, j] = x[n, c, r, q]
    np.testing.assert_array_equal(cols, expected)


def test_col2im_is_the_adjoint_of_im2col(rng):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: the defining property of the backward pass.
    x = rng.standard_normal((2, 3, 7, 8))
    args = ((3, 2), (2, 1), (1, 2), (1, 2))
    cols = F.im2col(x, *args)
    c = rng.standard_normal(cols.shape)
    back = F.col2im(c, x.shape, *args)
    assert back.shape == x.shape
    assert np.isclose((cols * c).sum(), (x * back).sum(), rtol=1e-12)


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
