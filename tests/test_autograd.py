"""The Tensor and the backward engine."""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
from minifcn.autograd import Function


def test_tensor_attributes(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    t = mf.Tensor(a, requires_grad=True)
    assert t.data is a and t.grad is None
    assert (t.shape, t.dtype, t.device, t.ndim, t.size) == ((2, 3), np.float32, "cpu", 2, 6)
    assert t.numpy() is a and t.to("cpu") is t
    assert "requires_grad=True" in repr(t)


def test_tensor_rejects_non_arrays_and_integer_gradients():
    with pytest.raises(TypeError, match=r"expected a numpy.ndarray or cupy.ndarray, got list"):
        mf.Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
        mf.Tensor(np.arange(3), requires_grad=True)


def test_gradient_of_a_tensor_used_twice_accumulates(rng):
    a = rng.standard_normal(5)
    x = mf.Tensor(a, requires_grad=True)
    y = x * x + x * 3.0  # x used three times
    y.backward(np.ones(5))
    np.testing.assert_allclose(x.grad, 2 * a + 3)


def test_diamond_graph_visits_each_function_once(rng):
    calls = []

    class Double(Function):
        def forward(self, x):
            return 2 * x

        def backward(self, gy):
            calls.append(1)
            return 2 * gy

    a = rng.standard_normal(4)
    x = mf.Tensor(a, requires_grad=True)
    h = Double()(x)
    y = F.relu(h) + F.mul(h, 3.0)  # h feeds two branches that meet again
    y.backward(np.ones(4))
    assert len(calls) == 1
    np.testing.assert_allclose(x.grad, 2 * ((2 * a > 0) + 3.0))


def test_grads_accumulate_across_backward_calls_until_zeroed(rng):
    x = mf.Tensor(rng.standard_normal(3), requires_grad=True)
    (x * 2.0).backward(np.ones(3))
    (x * 2.0).backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, np.full(3, 4.0))
    x.zero_grad()
    assert x.grad is None


def test_graph_is_freed_after_backward(rng):
    x = mf.Tensor(rng.standard_normal(3), requires_grad=True)
    y = F.relu(x * 2.0)
    y.backward(np.ones(3))
    with pytest.raises(RuntimeError, match="already freed.*retain_graph=True"):
        y.backward(np.ones(3))


def test_retain_graph_allows_a_second_pass(rng):
    x = mf.Tensor(rng.standard_normal(3), requires_grad=True)
    y = x * 2.0
    y.backward(np.ones(3), retain_graph=True)
    y.backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, np.full(3, 4.0))


def test_no_grad_records_nothing(rng):
    x = mf.Tensor(rng.standard_normal(3), requires_grad=True)
    with mf.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    assert mf.is_grad_enabled()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward(np.ones(3))


def test_no_grad_as_decorator(rng):
    @mf.no_grad()
    def f(t):
        return t * 2.0

    assert not f(mf.Tensor(np.ones(2), requires_grad=True)).requires_grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_keep_the_data_dtype(rng, dtype):
    x = mf.Tensor(rng.standard_normal((1, 2, 6, 6)).astype(dtype), requires_grad=True)
    w = mf.Tensor(rng.standard_normal((3, 2, 3, 3)).astype(dtype), requires_grad=True)
    y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2, ceil_mode=True)
    F.softmax_cross_entropy(y, np.zeros((1, 3, 3), np.int64)).backward()
    assert x.grad.dtype == dtype and w.grad.dtype == dtype
    assert isinstance(x.grad, np.ndarray)


def test_backward_needs_a_gradient_for_non_scalars(rng):
    y = mf.Tensor(rng.standard_normal(3), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match="one-element tensor, got shape"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad must be an array of shape \(3,\), got \(4,\)"):
        y.backward(np.ones(4))


def test_a_backward_returning_a_wrong_shape_is_caught(rng):
    class Broken(Function):
        def forward(self, x):
            return x.copy()

        def backward(self, gy):
            return gy[:-1]

    y = Broken()(mf.Tensor(rng.standard_normal(3), requires_grad=True))
    with pytest.raises(
        RuntimeError, match=r"Broken.backward returned a gradient of shape \(2,\) for an input of shape \(3,\)"
    ):
        y.backward(np.ones(3))


def test_multi_output_function(rng):
    class Split(Function):
        def forward(self, x):
            return x[:2].copy(), x[2:].copy()

        def backward(self, ga, gb):
            return np.concatenate([ga, gb])

    x = mf.Tensor(rng.standard_normal(5), requires_grad=True)
    a, b = Split()(x)
    (a * 3.0).backward(np.ones(2))  # b unused: its gradient is zero
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 0.0, 0.0, 0.0])


def test_deep_chain_does_not_hit_the_recursion_limit():
    x = mf.Tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(3000):
        y = y + 1.0
    y.backward(np.ones(2))
    np.testing.assert_array_equal(x.grad, np.ones(2))


def test_tensor_misuse_errors():
    t = mf.Tensor(np.ones(3))
    with pytest.raises(TypeError, match="data is already a Tensor"):
        mf.Tensor(t)
    with pytest.raises(ValueError, match=r"item\(\) needs a tensor with one element, got shape \(3,\)"):
        t.item()
    with pytest.raises(TypeError, match="defined for a Python number x only"):
        t / t
    with pytest.raises(TypeError, match="expected a Tensor or an array, got list"):
        F.relu([1.0, -1.0])
