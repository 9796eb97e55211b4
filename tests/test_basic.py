"""add, mul, sum, relu, dropout, crop, concat."""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
from minifcn.functional.cpu import threads
from minifcn.gradcheck import gradcheck


def test_add_mul_values_and_gradcheck(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal((mf.Tensor(a) + mf.Tensor(b)).data, a + b)
    np.testing.assert_array_equal((mf.Tensor(a) * mf.Tensor(b)).data, a * b)
    ta, tb = mf.Tensor(a, requires_grad=True), mf.Tensor(b, requires_grad=True)
    gradcheck(lambda x, y: F.add(x, y) * x, [ta, tb])
    gradcheck(lambda x, y: F.mul(x, y), [ta, tb])


def test_scalar_operators(rng):
    a = rng.standard_normal((3, 2)).astype(np.float32)
    t = mf.Tensor(a)
    for result, expected in [
        (t + 2.0, a + 2),
        (2.0 + t, a + 2),
        (t * 3, a * 3),
        (0.5 * t, a * 0.5),
        (t - 1.0, a - 1),
        (1.0 - t, 1 - a),
        (-t, -a),
        (t / 4.0, a / 4),
    ]:
        assert result.dtype == np.float32  # a Python number never changes the dtype
        np.testing.assert_allclose(result.data, expected, rtol=1e-6)
    x = mf.Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    gradcheck(lambda x: 1.0 - (x * 0.01 + 2.0) / 3.0, [x])


def test_ndarray_times_tensor_returns_a_tensor(rng):
    a = rng.standard_normal((2, 2))
    t = mf.Tensor(a, requires_grad=True)
    y = a * t
    assert isinstance(y, mf.Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(t.grad, a)


def test_add_refuses_to_broadcast_or_cast():
    with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(3,\) differ \(minifcn does not broadcast\)"):
        F.add(mf.Tensor(np.zeros((2, 3))), mf.Tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="float32 and float64 differ"):
        F.mul(mf.Tensor(np.zeros(3, np.float32)), mf.Tensor(np.zeros(3)))


@pytest.mark.parametrize("split", [False, True], ids=["one thread", "channels split"])
def test_sum_and_relu(rng, split, monkeypatch):
    # On the CPU, large maps are rectified a range of channels per thread: forced here, three ranges.
    if split:
        monkeypatch.setattr(threads, "MIN_BYTES", 0)
        monkeypatch.setattr(threads, "count", lambda: 3)
    x = rng.standard_normal((2, 3, 4))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink
    assert np.isclose(F.sum(mf.Tensor(x)).item(), x.sum())
    np.testing.assert_array_equal(F.relu(mf.Tensor(x)).data, np.maximum(x, 0))
    gradcheck(lambda t: F.relu(t), [mf.Tensor(x, requires_grad=True)])
    gradcheck(lambda t: F.sum(t), [mf.Tensor(x, requires_grad=True)])


@pytest.mark.parametrize("split", [False, True], ids=["one thread", "channels split"])
def test_relu_inplace_writes_over_its_input_with_the_same_values_and_gradient(rng, split, monkeypatch):
    if split:
        monkeypatch.setattr(threads, "MIN_BYTES", 0)
        monkeypatch.setattr(threads, "count", lambda: 2)
    x = rng.standard_normal((2, 3, 4))
    x[np.abs(x) < 1e-3] = 0.5
    a = x.copy()
    y = F.relu(mf.Tensor(a), inplace=True)
    assert y.data is a
    np.testing.assert_array_equal(a, np.maximum(x, 0))
    # Behind a product (whose output nothing else reads), the gradient is exactly the out-of-place one.
    grads = []
    for inplace in (False, True):
        t = mf.Tensor(x.copy(), requires_grad=True)
        F.sum(F.relu(t * 2.0, inplace=inplace)).backward()
        grads.append(t.grad)
    np.testing.assert_array_equal(grads[0], grads[1])
    gradcheck(lambda t: F.relu(t * 2.0, inplace=True), [mf.Tensor(x, requires_grad=True)])


@pytest.mark.parametrize("split", [False, True], ids=["one thread", "channels split"])
def test_relu_of_maps_views_and_special_values(rng, split, monkeypatch):
    """Maps are rectified plane by plane against a plane of zeros: the values of np.maximum(x, 0), NaN and
    infinities included, also in place on a view that is not contiguous (whose planes are not)."""
    if split:
        monkeypatch.setattr(threads, "MIN_BYTES", 0)
        monkeypatch.setattr(threads, "count", lambda: 2)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 5, 7)).astype(dtype)
        x[0, 1, 2, :4] = [np.nan, np.inf, -np.inf, -0.0]
        expected = np.maximum(x, 0)
        np.testing.assert_array_equal(F.relu(mf.Tensor(x.copy())).data, expected)
        a = x.copy()
        F.relu(mf.Tensor(a), inplace=True)
        np.testing.assert_array_equal(a, expected)
        base = x.copy()
        F.relu(mf.Tensor(base[:, :, :, ::2]), inplace=True)  # every other column, in place
        np.testing.assert_array_equal(base[..., ::2], expected[..., ::2])
        np.testing.assert_array_equal(base[..., 1::2], x[..., 1::2])  # the columns between left alone
    for empty in ((0, 3, 4, 4), (2, 3, 0, 5)):  # no images, no rows: nothing to rectify, no error
        assert F.relu(mf.Tensor(np.zeros(empty, np.float32))).shape == empty


def test_dropout_is_inverted_and_reproducible(rng):
    x = np.ones((200, 200), np.float32)
    mf.manual_seed(3)
    y = F.dropout(mf.Tensor(x), p=0.25).data
    kept = y != 0
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs(kept.mean() - 0.75) < 0.01  # 40,000 draws: 0.01 is over 4 standard deviations
    assert abs(y.mean() - 1.0) < 0.02  # the expectation is preserved
    mf.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(mf.Tensor(x), p=0.25).data, y)


def test_dropout_masks_for_the_gpu_come_from_the_host_generator(monkeypatch):
    """For a device array the samples are the host generator's, copied over (a stand-in plays the GPU here)."""
    from minifcn import rng as package_rng

    moved = []
    monkeypatch.setattr(package_rng, "get_array_module", lambda a: object())  # not NumPy: a device array
    monkeypatch.setattr(package_rng, "to_device", lambda a, device: moved.append(device) or a)
    mf.manual_seed(5)
    on_device = package_rng.uniform_like(np.zeros((3, 4), np.float32))
    mf.manual_seed(5)
    expected = np.random.default_rng(5).random((3, 4), dtype=np.float32)
    assert moved == ["cuda"] and on_device.dtype == np.float32
    np.testing.assert_array_equal(on_device, expected)


def test_dropout_backward_uses_the_forward_mask(rng):
    x = mf.Tensor(rng.standard_normal((4, 5)), requires_grad=True)
    y = F.dropout(x, p=0.5)
    y.backward(np.ones((4, 5)))
    np.testing.assert_array_equal(x.grad, (y.data != 0) * 2.0)


def test_dropout_is_the_identity_when_not_training(rng):
    x = mf.Tensor(rng.standard_normal((3, 3)))
    assert F.dropout(x, 0.5, training=False) is x
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\)"):
        F.dropout(x, 1.0)


def test_crop_is_caffes_and_gradcheck(rng):
    x = rng.standard_normal((2, 3, 9, 8))
    y = F.crop(mf.Tensor(x), (4, 5), (2, 3))
    np.testing.assert_array_equal(y.data, x[..., 2:6, 3:8])
    np.testing.assert_array_equal(F.crop(mf.Tensor(x), (5, 5), 1).data, x[..., 1:6, 1:6])
    gradcheck(lambda t: F.crop(t, (4, 5), (2, 3)), [mf.Tensor(x, requires_grad=True)])


def test_crop_out_of_bounds_names_shapes():
    with pytest.raises(
        ValueError, match=r"a 5x5 window at offset \(19, 19\) does not fit in the input of shape \(1, 21, 22, 22\)"
    ):
        F.crop(mf.Tensor(np.zeros((1, 21, 22, 22))), (5, 5), 19)


def test_concat_values_and_gradcheck(rng):
    a, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 1, 4, 4))
    np.testing.assert_array_equal(F.concat([mf.Tensor(a), mf.Tensor(b)]).data, np.concatenate([a, b], axis=1))
    ta, tb = mf.Tensor(a, requires_grad=True), mf.Tensor(b, requires_grad=True)
    gradcheck(lambda x, y: F.concat([x, y], axis=1), [ta, tb])
    gradcheck(lambda x, y: F.concat([x, x, y], axis=1), [ta, tb])  # a tensor used twice
    with pytest.raises(ValueError, match=r"input 1 has shape \(2, 1, 3, 4\), incompatible with \(2, 3, 4, 4\)"):
        F.concat([mf.Tensor(a), mf.Tensor(np.zeros((2, 1, 3, 4)))])


def test_concat_and_crop_errors():
    with pytest.raises(ValueError, match="needs at least one tensor"):
        F.concat([])
    with pytest.raises(TypeError, match="input 1 has dtype float32, input 0 has float64"):
        F.concat([mf.Tensor(np.zeros((1, 2))), mf.Tensor(np.zeros((1, 2), np.float32))])
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(5,\)"):
        F.crop(mf.Tensor(np.zeros(5)), (1, 1), 0)
