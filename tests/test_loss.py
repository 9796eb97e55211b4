"""log_softmax and softmax_cross_entropy with the ignore label."""

import numpy as np
import pytest
from reference_loops import softmax_cross_entropy_loop

import minifcn as mf
import minifcn.functional as F
from minifcn.gradcheck import gradcheck


def _labels(rng, N, H, W, C, ignored=0.2):
    labels = rng.integers(0, C, size=(N, H, W))
    labels[rng.random((N, H, W)) < ignored] = 255
    return labels


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_cross_entropy_matches_loop(rng, reduction):
    scores = rng.standard_normal((2, 5, 4, 3)) * 3
    labels = _labels(rng, 2, 4, 3, 5)
    loss = F.softmax_cross_entropy(mf.Tensor(scores), labels, reduction=reduction)
    assert loss.shape == ()
    assert np.isclose(loss.item(), softmax_cross_entropy_loop(scores, labels, 255, reduction), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("size", [(2, 4, 3, 5), (1, 3, 1, 1), (3, 21, 2, 2)])
def test_softmax_cross_entropy_gradcheck_with_ignored_pixels(rng, reduction, size):
    N, C, H, W = size
    labels = _labels(rng, N, H, W, C)
    labels.reshape(-1)[0] = 0  # at least one counted pixel
    scores = mf.Tensor(rng.standard_normal(size), requires_grad=True)
    gradcheck(lambda s: F.softmax_cross_entropy(s, labels, reduction=reduction), [scores])


def test_ignored_pixels_get_zero_gradient(rng):
    labels = _labels(rng, 1, 4, 4, 3, ignored=0.5)
    scores = mf.Tensor(rng.standard_normal((1, 3, 4, 4)), requires_grad=True)
    F.softmax_cross_entropy(scores, labels).backward()
    ignored = labels == 255
    assert np.all(scores.grad[:, :, ignored[0]] == 0)
    assert np.all(np.abs(scores.grad[:, :, ~ignored[0]]).sum(axis=1) > 0)


def test_every_pixel_ignored_gives_zero_loss_and_zero_gradient(rng):
    scores = mf.Tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=True)
    labels = np.full((2, 4, 4), 255)
    for reduction in ("mean", "sum"):
        loss = F.softmax_cross_entropy(scores, labels, reduction=reduction)
        loss.backward()
        assert loss.item() == 0.0 and not np.isnan(loss.item())
        assert np.all(scores.grad == 0)
        scores.grad = None


def test_custom_ignore_index(rng):
    scores = rng.standard_normal((1, 3, 2, 2))
    labels = np.array([[[0, -1], [2, 1]]])
    loss = F.softmax_cross_entropy(mf.Tensor(scores), labels, ignore_index=-1)
    assert np.isclose(loss.item(), softmax_cross_entropy_loop(scores, labels, -1, "mean"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_scores_stay_finite_and_exact(dtype):
    # softmax(s) is unchanged by adding a constant; the stable form must not overflow.
    scores = np.array([[[[1000.0]], [[0.0]], [[-1000.0]]]], dtype=dtype)  # (1, 3, 1, 1)
    labels = np.array([[[1]]])
    t = mf.Tensor(scores, requires_grad=True)
    loss = F.softmax_cross_entropy(t, labels)
    loss.backward()
    assert loss.dtype == dtype and t.grad.dtype == dtype
    assert np.isclose(loss.item(), 1000.0, rtol=1e-6)
    assert np.all(np.isfinite(t.grad))
    shifted = F.softmax_cross_entropy(mf.Tensor(scores - 5e3), labels)
    assert np.isclose(shifted.item(), loss.item(), rtol=1e-6)


def test_log_softmax_matches_definition_and_gradcheck(rng):
    x = rng.standard_normal((2, 4, 3, 2))
    y = F.log_softmax(mf.Tensor(x)).data
    np.testing.assert_allclose(y, x - np.log(np.exp(x).sum(axis=1, keepdims=True)), rtol=1e-12)
    gradcheck(lambda t: F.log_softmax(t), [mf.Tensor(x, requires_grad=True)])
    gradcheck(lambda t: F.log_softmax(t, axis=-1), [mf.Tensor(x, requires_grad=True)])


def test_labels_of_the_wrong_shape():
    with pytest.raises(
        ValueError, match=r"labels of shape \(2, 4, 4\) do not match scores of shape \(2, 3, 5, 4\).*\(2, 5, 4\)"
    ):
        F.softmax_cross_entropy(mf.Tensor(np.zeros((2, 3, 5, 4))), np.zeros((2, 4, 4), np.int64))


def test_label_values_outside_the_classes_are_named():
    labels = np.array([[[0, 3], [7, 255]]])
    with pytest.raises(ValueError, match=r"2 label\(s\) outside \[0, 3\).*ignore index 255; values: \[3, 7\]"):
        F.softmax_cross_entropy(mf.Tensor(np.zeros((1, 3, 2, 2))), labels)
    with pytest.raises(ValueError, match=r"values: \[-2\]"):
        F.softmax_cross_entropy(mf.Tensor(np.zeros((1, 3, 2, 2))), np.array([[[0, -2], [1, 1]]]))


@pytest.mark.parametrize("labels", [np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), bool), [[[0, 1], [1, 0]]]])
def test_labels_must_be_integers(labels):
    with pytest.raises(TypeError, match="labels must be an integer array"):
        F.softmax_cross_entropy(mf.Tensor(np.zeros((1, 3, 2, 2))), labels)


def test_bad_reduction():
    with pytest.raises(ValueError, match="'mean' or 'sum'"):
        F.softmax_cross_entropy(mf.Tensor(np.zeros((1, 3, 2, 2))), np.zeros((1, 2, 2), np.int64), reduction="none")


# ---------------------------------------------------------------------------
# Class weights (PyTorch's convention: 'mean' divides by the summed weights of the counted pixels)


def _weighted_loop(scores, labels, weight, reduction):
    """The weighted loss and its gradient, one pixel at a time, in float64."""
    N, C, H, W = scores.shape
    total, weights, grad = 0.0, 0.0, np.zeros_like(scores)
    for n in range(N):
        for i in range(H):
            for j in range(W):
                y = labels[n, i, j]
                if y == 255:
                    continue
                s = scores[n, :, i, j]
                p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                total += weight[y] * -np.log(p[y])
                weights += weight[y]
                grad[n, :, i, j] = weight[y] * (p - np.eye(C)[y])
    scale = 1.0 / weights if reduction == "mean" else 1.0
    return total * scale, grad * scale


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_weighted_loss_and_gradient_match_a_loop(rng, reduction):
    scores = rng.standard_normal((2, 4, 5, 3)) * 2
    labels = _labels(rng, 2, 5, 3, 4)
    weight = np.array([0.5, 2.0, 1.0, 3.5])
    t = mf.Tensor(scores, requires_grad=True)
    loss = F.softmax_cross_entropy(t, labels, reduction=reduction, weight=weight)
    loss.backward()
    expected, expected_grad = _weighted_loop(scores, labels, weight, reduction)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(t.grad, expected_grad, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_weighted_loss_gradcheck(rng, reduction):
    labels = _labels(rng, 2, 3, 4, 5)
    labels[0, 0, 0] = 1
    weight = rng.uniform(0.1, 4.0, 5)
    scores = mf.Tensor(rng.standard_normal((2, 5, 3, 4)), requires_grad=True)
    gradcheck(lambda s: F.softmax_cross_entropy(s, labels, reduction=reduction, weight=weight), [scores])


def test_equal_weights_change_nothing_and_zero_weight_drops_a_class(rng):
    scores = rng.standard_normal((1, 3, 6, 6))
    labels = _labels(rng, 1, 6, 6, 3)
    plain = F.softmax_cross_entropy(mf.Tensor(scores), labels).item()
    assert F.softmax_cross_entropy(mf.Tensor(scores), labels, weight=[4.0, 4.0, 4.0]).item() == pytest.approx(plain)
    dropped = labels.copy()
    dropped[dropped == 2] = 255
    expected = F.softmax_cross_entropy(mf.Tensor(scores), dropped).item()
    assert F.softmax_cross_entropy(mf.Tensor(scores), labels, weight=[1.0, 1.0, 0.0]).item() == pytest.approx(expected)
    assert F.softmax_cross_entropy(mf.Tensor(scores), np.full((1, 6, 6), 2), weight=[1, 1, 0]).item() == 0.0


@pytest.mark.parametrize(
    "weight, match",
    [
        ([1.0, 2.0], r"one value per class, shape \(3,\), got \(2,\)"),
        ([1.0, -1.0, 1.0], r"finite and >= 0, got \[1.0, -1.0, 1.0\]"),
        ([1.0, np.nan, 1.0], r"finite and >= 0"),
    ],
)
def test_bad_class_weights_are_named(rng, weight, match):
    with pytest.raises(ValueError, match=match):
        F.softmax_cross_entropy(
            mf.Tensor(rng.standard_normal((1, 3, 2, 2))), np.zeros((1, 2, 2), np.int64), weight=weight
        )
