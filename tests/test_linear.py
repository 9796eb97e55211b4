"""linear and flatten: the classifiers' fully connected head, and the layers around them."""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
import minifcn.nn as nn
from minifcn.gradcheck import gradcheck


def test_linear_matches_a_direct_loop(rng):
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    expected = np.zeros((3, 4))
    for n in range(3):
        for o in range(4):
            expected[n, o] = b[o] + sum(x[n, i] * w[o, i] for i in range(5))
    np.testing.assert_allclose(F.linear(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b)).data, expected, rtol=1e-12)
    np.testing.assert_allclose(F.linear(mf.Tensor(x), mf.Tensor(w)).data, expected - b, rtol=1e-12)


def test_linear_gradcheck(rng):
    x, w, b = (mf.Tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 5), (4, 5), (4,)))
    gradcheck(F.linear, [x, w, b])
    gradcheck(F.linear, [x, w])


def test_flatten_is_c_h_w_order_and_gradcheck(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    y = F.flatten(mf.Tensor(x)).data
    assert y.shape == (2, 60)
    assert y[1, 2 * 20 + 3 * 5 + 4] == x[1, 2, 3, 4]  # index c*H*W + h*W + w
    gradcheck(lambda t: F.flatten(t) * 2.0, [mf.Tensor(x, requires_grad=True)])


def test_linear_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"input \(2, 6\) has 6 features, weight \(4, 5\) expects 5"):
        F.linear(mf.Tensor(np.zeros((2, 6))), mf.Tensor(np.zeros((4, 5))))
    with pytest.raises(ValueError, match=r"need input \(N, IN\)"):
        F.linear(mf.Tensor(np.zeros((2, 3, 5))), mf.Tensor(np.zeros((4, 5))))
    with pytest.raises(ValueError, match=r"bias \(3,\) does not match weight \(4, 5\)"):
        F.linear(mf.Tensor(np.zeros((2, 5))), mf.Tensor(np.zeros((4, 5))), mf.Tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="input is float32 but weight is float64"):
        F.linear(mf.Tensor(np.zeros((2, 5), np.float32)), mf.Tensor(np.zeros((4, 5))))
    with pytest.raises(ValueError, match="flatten: input must have a batch axis"):
        F.flatten(mf.Tensor(np.zeros(3)))


def test_linear_layer_names_itself_in_errors():
    model = nn.Sequential({"fc6": nn.Linear(5, 2)})
    with pytest.raises(ValueError, match=r"layer fc6 = Linear\(5, 2, bias=True\): linear: input \(1, 3\)"):
        model(mf.Tensor(np.zeros((1, 3), np.float32)))


def test_scale_and_avg_pool_layers(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    np.testing.assert_array_equal(nn.Scale(0.01)(mf.Tensor(x)).data, x * 0.01)
    pooled = nn.AvgPool2d(2, stride=2, ceil_mode=True)(mf.Tensor(x)).data
    assert pooled.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(pooled[0, 1, 0, 0], x[0, 1, :2, :2].mean())
    np.testing.assert_allclose(pooled[0, 1, 2, 2], x[0, 1, 4, 4])  # a clipped ceil-mode window averages what it sees


def test_sequential_with_names_and_replacing_keeps_order():
    model = nn.Sequential({"conv": nn.Conv2d(1, 2, 3), "relu": nn.ReLU(), "fc": nn.Linear(2, 2)})
    assert list(model.state_dict()) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    model.conv = nn.Conv2d(1, 3, 3)  # replaced in place: still first
    assert list(model.state_dict()) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert model.conv.weight.shape == (3, 1, 3, 3)
    with pytest.raises(TypeError, match="'x' is a int, not a Module"):
        nn.Sequential({"x": 3})
