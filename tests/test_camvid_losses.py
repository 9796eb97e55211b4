"""The losses of benchmarks/camvid_losses.py that the CamVid search's figures rest on: label smoothing's uniform
part, the soft Jaccard loss (its
value against a loop, its one-hot limit against the confusion matrix's IU, its gradient by central differences)
and the bootstrapped cross-entropy's choice of the hardest pixels."""

import numpy as np
import pytest

import minifcn as mf
from minifcn.data import IGNORE
from minifcn.gradcheck import gradcheck
from minifcn.metrics import confusion_matrix, segmentation_scores


@pytest.fixture(scope="module")
def losses(load_benchmark):
    return load_benchmark("camvid_losses")


def scores_and_labels(seed: int, shape=(2, 5, 4, 6), classes=4):
    """Float64 scores over 5 classes and labels of only the first ``classes`` (so one class is absent), some void."""
    rng = np.random.default_rng(seed)
    N, C, H, W = shape
    labels = rng.integers(0, classes, (N, H, W))
    labels[rng.random((N, H, W)) < 0.15] = IGNORE
    return rng.standard_normal(shape), labels


def test_smoothing_loss_is_the_uniform_targets_cross_entropy_and_its_gradient(losses):
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((2, 4, 3, 5))
    labels = rng.integers(0, 4, (2, 3, 5))
    labels[0, 0, :2] = IGNORE
    log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    direct = 0.1 * np.mean([-log_p[n, :, i, j].mean() for n, i, j in zip(*np.nonzero(labels != IGNORE))])
    x = mf.Tensor(scores, requires_grad=True)
    loss = losses.smoothing_loss(x, labels, 0.1, "cpu")
    assert abs(loss.item() - direct) < 1e-12
    loss.backward()
    assert np.all(x.grad[0, :, 0, :2] == 0)  # ignored pixels get no gradient
    eps = 1e-6
    for index in [(0, 1, 2, 3), (1, 3, 0, 0), (0, 0, 1, 4)]:
        step = np.zeros_like(scores)
        step[index] = eps
        up = losses.smoothing_loss(mf.Tensor(scores + step), labels, 0.1, "cpu").item()
        down = losses.smoothing_loss(mf.Tensor(scores - step), labels, 0.1, "cpu").item()
        assert abs((up - down) / (2 * eps) - x.grad[index]) < 1e-8


def test_soft_jaccard_equals_its_definition_written_as_a_loop(losses):
    s, labels = scores_and_labels(0)
    N, C, H, W = s.shape
    ious = []
    for c in range(C):
        inter = total = truth = 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    if labels[n, i, j] == IGNORE:
                        continue
                    e = np.exp(s[n, :, i, j] - s[n, :, i, j].max())
                    p = e[c] / e.sum()
                    is_c = labels[n, i, j] == c
                    inter, total, truth = inter + p * is_c, total + p, truth + is_c
        if truth > 0:  # the classes present in the labels
            ious.append(inter / (total + truth - inter))
    assert len(ious) == 4
    loss = losses.soft_jaccard(mf.Tensor(s), labels).data
    assert abs(float(loss) - (1 - np.mean(ious))) < 1e-12


def test_soft_jaccard_of_confident_scores_is_one_minus_the_mean_iu(losses):
    _, labels = scores_and_labels(1, shape=(2, 5, 8, 9))
    rng = np.random.default_rng(2)
    calls = np.where(rng.random(labels.shape) < 0.3, rng.integers(0, 4, labels.shape), np.maximum(labels, 0) % 4)
    s = 60.0 * (np.arange(5)[None, :, None, None] == calls[:, None])  # softmax one-hot to ~1e-26
    iu = segmentation_scores(confusion_matrix(labels, calls, 5))["iu"]
    loss = float(losses.soft_jaccard(mf.Tensor(s), labels).data)
    assert abs(loss - (1 - np.nanmean(iu))) < 1e-12 and 0.1 < loss < 0.9


def test_soft_jaccard_gradient_by_central_differences(losses):
    s, labels = scores_and_labels(3)
    assert gradcheck(lambda t: losses.soft_jaccard(t, labels), [mf.Tensor(s, requires_grad=True)], atol=1e-8)


def test_soft_jaccard_gradient_is_zero_on_void_pixels(losses):
    s, labels = scores_and_labels(4)
    x = mf.Tensor(s, requires_grad=True)
    losses.soft_jaccard(x, labels).backward()
    void = labels == IGNORE
    assert void.any() and np.all(x.grad[np.broadcast_to(void[:, None], s.shape)] == 0)
    assert np.abs(x.grad[np.broadcast_to(~void[:, None], s.shape)]).min() > 0


def test_hardest_only_keeps_the_share_whose_true_class_is_least_likely(losses):
    s, labels = scores_and_labels(5, shape=(3, 5, 10, 12))
    kept = losses.hardest_only(s.astype(np.float32), labels, 0.25)
    valid = labels != IGNORE
    p_true = []  # the true class's softmax probability, pixel by pixel
    for n, i, j in zip(*np.nonzero(valid)):
        e = np.exp(s[n, :, i, j] - s[n, :, i, j].max())
        p_true.append(e[labels[n, i, j]] / e.sum())
    order = np.argsort(p_true)
    k = round(0.25 * valid.sum())
    expected = np.full(labels.shape, IGNORE)
    hard = tuple(a[order[:k]] for a in np.nonzero(valid))
    expected[hard] = labels[hard]
    assert np.array_equal(kept, expected)
    assert np.all(kept[~valid] == IGNORE)
