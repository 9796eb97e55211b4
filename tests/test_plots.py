"""minifcn.plots: round ticks, the moving average, the curves drawn from log.csv's rows, strips with a legend."""

import numpy as np
import pytest

from minifcn import plots
from minifcn.viz import palette_colours


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0, 1000, [0, 200, 400, 600, 800, 1000]),
        (0.13, 0.87, [0.2, 0.4, 0.6, 0.8]),
    ],
)
def test_ticks_are_round_and_cover_the_range(low, high, expected):
    np.testing.assert_allclose(plots.ticks(low, high), expected)
    assert plots.ticks(3.0, 3.0) == [3.0]


def test_moving_average():
    assert plots.smoothed([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def _has(image, colour):
    return bool((np.asarray(image)[..., :3] == colour).all(axis=-1).any())


def test_curves_from_log_rows_show_loss_evaluations_and_rate():
    rows = [{"iteration": str(t), "loss": f"{2.0 / t:.4f}", "lr": f"{0.01 * (1 - t / 100):.6f}"} for t in range(1, 101)]
    for t in (25, 50, 100):
        rows[t - 1].update(mean_iu=f"{t / 200:.3f}", pixel_acc=f"{0.5 + t / 400:.3f}")
    image = plots.curves(rows)
    assert image.size == (980, 600)
    for colour in (plots.LOSS, plots.LOSS_RAW, plots.MEAN_IU, plots.PIXEL_ACC, plots.RATE, plots.GRID):
        assert _has(image, colour), colour
    pixels = np.asarray(image)
    for bottom, left, right in ((400, 70, 470), (400, 560, 960), (560, 70, 960)):  # the panels' lower edges
        name = pixels[bottom + 17 : bottom + 30, left:right]  # below the tick values: the x axis's name
        assert (name < 100).all(axis=-1).sum() > 20  # dark text (drawn smoothed, so not exactly INK)
    # The learning rate's peak (the first iteration here) is marked with its value, under the falling line.
    near_rate = np.abs(pixels[489:500, 90:160].astype(int) - plots.RATE).sum(axis=-1) < 60  # smoothed text
    assert near_rate.sum() > 20
    before_any_evaluation = plots.curves(rows[:10])
    assert _has(before_any_evaluation, plots.LOSS) and not _has(before_any_evaluation, plots.PIXEL_ACC)
    assert plots.curves([]).size == (980, 600)


def test_sample_strip_has_named_panels_and_a_legend_of_the_classes_present():
    truth = np.zeros((40, 50), np.uint8)
    truth[5:20, 5:20], truth[30:, :] = 3, 255
    prediction = np.zeros((40, 50), np.uint8)
    prediction[5:20, 5:20] = 2
    image = np.full((40, 50, 3), 128, np.uint8)
    strip = plots.sample_strip(image, truth, prediction, "voc", ["background", "disc", "square", "triangle"])
    # 40 rows are enlarged 4x (at most 4, towards STRIP_HEIGHT): panels of 160x200 under an 18-pixel row of
    # names, then the legend under the prediction: four classes present (0, 2, 3, void), in rows of 18 pixels
    assert strip.size[0] == 3 * 200 + 8 and (strip.size[1] - 18 - 160 - 18) // 18 in (1, 2, 4)
    pixels = np.asarray(strip)
    colours = palette_colours("voc")
    np.testing.assert_array_equal(pixels[18 : 18 + 160, 204:404], colours[truth].repeat(4, 0).repeat(4, 1))
    np.testing.assert_array_equal(pixels[18 : 18 + 160, 408:608], colours[prediction].repeat(4, 0).repeat(4, 1))
    assert (pixels[:18] < 128).all(axis=-1).any()  # the panels' names
    legend = pixels[18 + 160 :]
    assert (legend[:, : 2 * 204] == 255).all()  # nothing under the image and the truth
    for c in (0, 2, 3, 255):
        assert (legend == colours[c]).all(axis=-1).any(), c
    assert not (legend == colours[1]).all(axis=-1).any()  # disc is in neither map
    big = plots.sample_strip(np.zeros((400, 20, 3), np.uint8), np.zeros((400, 20), np.uint8), np.zeros((400, 20)))
    assert big.size[1] == 18 + 400 + 18 + 18  # tall enough: not enlarged; one class, one row
    assert big.size[0] > 3 * 20 + 8  # widened so that the legend's name under the narrow prediction fits
