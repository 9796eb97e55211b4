"""Batch normalisation: forward against a direct loop, running statistics, eval mode, gradients, buffers."""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
import minifcn.nn as nn
from minifcn.functional.cpu import threads
from minifcn.gradcheck import gradcheck


@pytest.fixture(params=[False, True], ids=["one thread", "channels split"])
def split(request, monkeypatch):
    """On the CPU, maps of MIN_BYTES and more are normalised a range of channels per thread: forced here."""
    if request.param:
        monkeypatch.setattr(threads, "MIN_BYTES", 0)
        monkeypatch.setattr(threads, "count", lambda: 2)
    return request.param


def loop_batch_norm(x, gamma, beta, eps):
    """Each channel's values gathered one by one, normalised by their own mean and (biased) variance."""
    N, C, H, W = x.shape
    y = np.empty_like(x)
    for c in range(C):
        values = [x[n, c, i, j] for n in range(N) for i in range(H) for j in range(W)]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    y[n, c, i, j] = gamma[c] * (x[n, c, i, j] - mean) / np.sqrt(var + eps) + beta[c]
    return y


def test_training_forward_matches_a_direct_loop_and_updates_running_statistics(rng, split):
    x = rng.standard_normal((2, 3, 4, 5)) * np.array([1.0, 3.0, 0.5])[None, :, None, None] + 2.0
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    running_mean, running_var = np.full(3, 0.5), np.full(3, 2.0)
    y = F.batch_norm(
        mf.Tensor(x), running_mean, running_var, mf.Tensor(gamma), mf.Tensor(beta), momentum=0.25, eps=1e-3
    )
    np.testing.assert_allclose(y.data, loop_batch_norm(x, gamma, beta, 1e-3), rtol=1e-10, atol=1e-12)
    m = 2 * 4 * 5
    for c in range(3):
        values = x[:, c].ravel()
        unbiased = ((values - values.mean()) ** 2).sum() / (m - 1)
        assert running_mean[c] == pytest.approx(0.75 * 0.5 + 0.25 * values.mean(), rel=1e-12)
        assert running_var[c] == pytest.approx(0.75 * 2.0 + 0.25 * unbiased, rel=1e-12)


def test_eval_mode_uses_the_running_statistics(rng, split):
    x = rng.standard_normal((2, 3, 3, 3))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    kept = running_mean.copy(), running_var.copy()
    y = F.batch_norm(mf.Tensor(x), running_mean, running_var, mf.Tensor(gamma), mf.Tensor(beta), training=False)
    expected = np.empty_like(x)
    for c in range(3):
        expected[:, c] = gamma[c] * (x[:, c] - kept[0][c]) / np.sqrt(kept[1][c] + 1e-5) + beta[c]
    np.testing.assert_allclose(y.data, expected, rtol=1e-12)
    np.testing.assert_array_equal(running_mean, kept[0])  # evaluation leaves them alone
    np.testing.assert_array_equal(running_var, kept[1])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(rng, training, split):
    x = mf.Tensor(rng.standard_normal((3, 3, 4, 3)) * 2 + 1, requires_grad=True)
    gamma = mf.Tensor(rng.standard_normal(3), requires_grad=True)
    beta = mf.Tensor(rng.standard_normal(3), requires_grad=True)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    gradcheck(lambda a, g, b: F.batch_norm(a, running_mean, running_var, g, b, training=training), [x, gamma, beta])


def test_layer_buffers_are_state_and_follow_eval(rng):
    layer = nn.BatchNorm2d(3, dtype=np.float64)
    assert list(layer.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]  # buffers are not learnt
    assert layer.weight.decay_mult == 0 and layer.bias.decay_mult == 0
    x = rng.standard_normal((4, 3, 5, 5)) * 3 + 1
    for _ in range(50):
        layer(mf.Tensor(x))
    # From (0, 1), 50 updates with momentum 0.1 leave 0.9^50 of the start and the rest of x's statistics.
    kept = 0.9**50
    mean, unbiased = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(layer.running_mean, (1 - kept) * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, kept + (1 - kept) * unbiased, rtol=1e-12)
    layer.eval()
    y = layer(mf.Tensor(x)).data
    running_mean, running_var = layer.running_mean, layer.running_var
    expected = (x - running_mean[:, None, None]) / np.sqrt(running_var[:, None, None] + 1e-5)  # gamma 1, beta 0
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)  # evaluation: the running statistics

    other = nn.BatchNorm2d(3, dtype=np.float64).eval()
    other.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(other.running_var, layer.running_var)
    np.testing.assert_array_equal(other(mf.Tensor(x)).data, y)
    with pytest.raises(ValueError, match=r"running_var: checkpoint \(4,\), model \(3,\)"):
        other.load_state_dict({**layer.state_dict(), "running_var": np.ones(4)})


def test_errors_name_the_layer_and_shapes():
    layer = nn.BatchNorm2d(3)
    layer._name = "bn1_1"
    with pytest.raises(ValueError, match=r"layer bn1_1 = BatchNorm2d\(3.*weight must have shape \(4,\)"):
        layer(mf.Tensor(np.zeros((1, 4, 2, 2), np.float32)))
    with pytest.raises(ValueError, match=r"more than one value per channel"):
        layer(mf.Tensor(np.zeros((1, 3, 1, 1), np.float32)))
    with pytest.raises(ValueError, match=r"must be 4-D"):
        layer(mf.Tensor(np.zeros((3, 2), np.float32)))


def test_register_buffer_names_and_refuses_a_clash():
    net = nn.Sequential({"bn": nn.BatchNorm2d(2, dtype=np.float64)})
    assert [name for name, _ in net.named_buffers()] == ["bn.running_mean", "bn.running_var"]
    net.bn.running_var = np.full(2, 3.0)  # a new array for a buffer stays a buffer
    assert net.state_dict()["bn.running_var"].tolist() == [3.0, 3.0]
    net.to("cpu")
    assert net.bn.running_var.tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="'weight' is already a parameter or sub-module"):
        net.bn.register_buffer("weight", np.zeros(2))


def test_recomputed_statistics_are_the_average_of_the_batches():
    """After recompute_batch_norm each layer's running mean and variance are the plain averages, over the batches,
    of its batch mean and unbiased batch variance (computed here directly from the layer's input)."""
    rng = np.random.default_rng(0)
    model = nn.Sequential({"conv": nn.Conv2d(2, 3, 3, dtype=np.float64), "bn": nn.BatchNorm2d(3, dtype=np.float64)})
    model.bn.running_mean[:] = 5.0  # what training left: forgotten entirely
    batches = [rng.standard_normal((2 + k, 2, 6, 5)) for k in range(3)]
    weights = {k: v.copy() for k, v in model.state_dict().items() if "running" not in k}
    model.eval()
    assert nn.recompute_batch_norm(model, (mf.Tensor(x) for x in batches)) == 3
    with mf.no_grad():
        inputs = [model.conv(mf.Tensor(x)).data for x in batches]  # what bn saw, batch by batch
    means = [h.mean(axis=(0, 2, 3)) for h in inputs]
    variances = [h.var(axis=(0, 2, 3), ddof=1) for h in inputs]
    np.testing.assert_allclose(model.bn.running_mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.bn.running_var, np.mean(variances, axis=0), rtol=1e-12)
    assert not model.training and model.bn.momentum == 0.1  # its mode and momentum as they were
    for k, v in model.state_dict().items():
        if "running" not in k:
            np.testing.assert_array_equal(v, weights[k])  # nothing learnt
    assert nn.recompute_batch_norm(nn.Sequential(nn.ReLU()), iter(())) == 0  # no batch norm: nothing to do
    with pytest.raises(ValueError, match="no batches given"):
        nn.recompute_batch_norm(model, iter(()))
