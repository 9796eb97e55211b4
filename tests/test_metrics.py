"""minifcn.metrics against hand-computed confusion matrices; minifcn.viz palette, colours and overlays."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minifcn.metrics import confusion_matrix, segmentation_scores
from minifcn.viz import colorize, overlay, voc_palette

VOC_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "voc_mini" / "VOC2012"


def test_confusion_matrix_by_hand():
    truth = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    # true 0 -> predicted 0, 1; true 1 -> 1, 1; true 2 -> 0; the 255 pixel is left out
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(confusion_matrix(truth, pred, 3), expected)


def test_scores_by_hand():
    hist = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    s = segmentation_scores(hist)
    assert s["pixel_acc"] == pytest.approx(3 / 5)
    assert s["mean_acc"] == pytest.approx((1 / 2 + 2 / 2 + 0 / 1) / 3)
    # IU = n_ii / (t_i + predicted_i - n_ii): class 0: 1 / (2 + 2 - 1), class 1: 2 / (2 + 3 - 2), class 2: 0 / 1
    np.testing.assert_allclose(s["iu"], [1 / 3, 2 / 3, 0.0])
    assert s["mean_iu"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert s["fw_iu"] == pytest.approx((2 * 1 / 3 + 2 * 2 / 3 + 1 * 0) / 5)


def test_a_class_that_never_occurs_has_no_iu_and_is_left_out_of_the_means():
    hist = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]), 3)
    s = segmentation_scores(hist)
    assert np.isnan(s["iu"][2])
    assert s["mean_iu"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert s["mean_acc"] == pytest.approx((1 + 1 / 2) / 2)


def test_scores_accumulate_over_a_split_not_per_image():
    a = confusion_matrix(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2)
    b = confusion_matrix(np.array([1, 1]), np.array([1, 1]), 2)
    split = segmentation_scores(a + b)["mean_iu"]
    per_image = np.mean([segmentation_scores(a)["mean_iu"], segmentation_scores(b)["mean_iu"]])
    assert split == pytest.approx((3 / 4 + 2 / 3) / 2) and split != pytest.approx(per_image)


def test_metric_errors():
    with pytest.raises(ValueError, match="3 true labels but 2 predictions"):
        confusion_matrix(np.zeros(3, int), np.zeros(2, int), 2)
    with pytest.raises(ValueError, match=r"predictions \[5\] are outside \[0, 3\)"):
        confusion_matrix(np.zeros(2, int), np.array([0, 5]), 3)
    with pytest.raises(ValueError, match="expected a square histogram"):
        segmentation_scores(np.zeros((2, 3)))


def test_voc_palette_known_colours():
    p = voc_palette()
    assert p.shape == (256, 3) and p.dtype == np.uint8
    assert p[0].tolist() == [0, 0, 0] and p[1].tolist() == [128, 0, 0] and p[15].tolist() == [192, 128, 128]
    assert p[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in p}) == 256


def test_colorize_writes_labels_as_palette_indices(tmp_path):
    label = np.array([[0, 1, 255], [20, 2, 0]])
    colorize(label).save(tmp_path / "l.png")
    back = Image.open(tmp_path / "l.png")
    assert back.mode == "P"
    np.testing.assert_array_equal(np.array(back), label)
    np.testing.assert_array_equal(np.array(back.convert("RGB"))[0, 1], [128, 0, 0])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 255\], got -1..2"):
        colorize(np.array([[-1, 2]]))


def test_overlay_blends_labelled_pixels_only():
    image = np.full((1, 3, 3), 100, np.uint8)
    out = np.array(overlay(image, np.array([[0, 1, 255]]), alpha=0.5))
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[0, 1], [114, 50, 50])  # halfway to (128, 0, 0)
    np.testing.assert_array_equal(out[0, 2], [100, 100, 100])
    with pytest.raises(ValueError, match=r"image \(1, 3, 3\) and label \(2, 2\)"):
        overlay(image, np.zeros((2, 2), int))


@pytest.mark.skipif(not VOC_MINI.is_dir(), reason="../shared/data/voc_mini is not here")
def test_real_voc_palette_and_the_reference_fcn8s_output():
    """The VOC label PNGs use exactly our palette; the reference FCN-8s output scores ~0.84 pixel accuracy."""
    label_image = Image.open(VOC_MINI / "SegmentationClass" / "2007_000129.png")
    np.testing.assert_array_equal(np.array(label_image.getpalette()).reshape(-1, 3)[:256], voc_palette())
    label = np.array(label_image)
    assert set(np.unique(label)) == {0, 2, 15, 255}
    reference_rgb = np.array(Image.open(VOC_MINI.parent / "reference_fcn8s_output_2007_000129.png").convert("RGB"))
    # Back from colours to class indices through the palette.
    lookup = {tuple(c): k for k, c in enumerate(voc_palette()[:21])}
    pred = np.array([[lookup[tuple(c)] for c in row] for row in reference_rgb])
    s = segmentation_scores(confusion_matrix(label, pred, 21))
    assert s["pixel_acc"] == pytest.approx(0.84, abs=0.02)
