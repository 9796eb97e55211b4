"""The built-in Shapes dataset: deterministic, split-disjoint, every class present, class not in colour."""

import numpy as np
import pytest
from scipy import ndimage

from minifcn.data import SHAPES_CLASSES, Shapes


def test_items_are_deterministic_and_well_formed():
    a, b = Shapes("train", size=48), Shapes("train", size=48)
    image, label = a[7]
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert label.shape == (48, 48) and label.dtype == np.int64
    np.testing.assert_array_equal(image, b[7][0])
    np.testing.assert_array_equal(label, b[7][1])
    assert not np.array_equal(image, a[8][0])
    assert len(a) == 2000 and len(Shapes("val")) == 100


def test_splits_and_seeds_differ():
    train, val, other = Shapes("train"), Shapes("val"), Shapes("train", seed=1)
    assert not np.array_equal(train[0][0], val[0][0])
    assert not np.array_equal(train[0][0], other[0][0])


def test_every_class_occurs_and_thin_shapes_are_thin():
    ds = Shapes("train", size=64)
    labels = np.stack([ds[i][1] for i in range(200)])
    counts = np.bincount(labels.ravel(), minlength=6)
    assert (counts > 0).all() and SHAPES_CLASSES[4:] == ("ring", "bar")

    # A ring or bar pixel has background within 3 pixels far more often than a disc pixel does.
    def near_other(cls):
        mask = labels == cls
        shifted = np.zeros_like(mask)
        for d in (-3, 3):
            shifted |= np.roll(labels, d, axis=1) != cls
            shifted |= np.roll(labels, d, axis=2) != cls
        return (mask & shifted).sum() / mask.sum()

    assert near_other(5) > 0.9 and near_other(4) > 0.9 and near_other(1) < 0.6


def test_shapes_never_touch():
    """Each connected piece of foreground is one shape of one class (none overlaps or touches another)."""
    ds = Shapes("train", size=128)
    n_shapes = []
    for i in range(60):
        label = ds[i][1]
        pieces, n = ndimage.label(label > 0)
        n_shapes.append(n)
        for k in range(1, n + 1):
            assert len(np.unique(label[pieces == k])) == 1, f"item {i}: piece {k} mixes classes"
    assert min(n_shapes) >= 1 and np.mean(n_shapes) > 2  # (a ring cut by the border is two pieces)


def test_colour_does_not_give_the_class_away():
    """The mean colour of each shape class is about the same: a net has to learn shapes."""
    ds = Shapes("train", size=64)
    sums, counts = np.zeros((6, 3)), np.zeros(6)
    for i in range(300):
        image, label = ds[i]
        for c in range(1, 6):
            m = label == c
            sums[c] += image[m].sum(axis=0)
            counts[c] += m.sum()
    means = sums[1:] / counts[1:, None]
    assert np.ptp(means, axis=0).max() < 40  # colours are uniform over 0..255 for every class


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of train, val, test, got 'dev'"):
        Shapes("dev")
    with pytest.raises(IndexError, match=r"index 5 out of range \[0, 5\)"):
        Shapes("val", length=5)[5]
    with pytest.raises(ValueError, match="size must be at least 16"):
        Shapes(size=8)


@pytest.mark.parametrize("size", [16, 37, 128])
def test_background_field_is_scipys_bilinear_zoom(size):
    # The smooth field is two small products; it must be the field scipy.ndimage.zoom draws (order 1), so
    # that the dataset does not depend on how it is computed.
    from minifcn.data.shapes import _bilinear_weights

    grid = np.random.default_rng(size).uniform(0, 255, size=(4, 4, 3))
    expected = ndimage.zoom(grid, (size / 4, size / 4, 1), order=1, mode="nearest")[:size, :size]
    weights = _bilinear_weights(size)
    np.testing.assert_allclose(np.einsum("ia,jb,abc->ijc", weights, weights, grid), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=0, atol=1e-15)
