"""minifcn.stitch: shift-and-stitch equals the dilated ("rarefied") net, and both equal the net on every window."""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
import minifcn.nn as nn
from minifcn import receptive, stitch

D = np.float64


def two_pool_net():
    return nn.Sequential(
        {
            "conv1": nn.Conv2d(2, 4, 3, dtype=D),
            "relu1": nn.ReLU(),
            "pool1": nn.MaxPool2d(2, 2),
            "conv2": nn.Conv2d(4, 5, 3, dtype=D),
            "relu2": nn.ReLU(),
            "pool2": nn.MaxPool2d(2, 2),
            "conv3": nn.Conv2d(5, 3, 3, dtype=D),
        }
    )


def strided_conv_net():
    """Subsampling by a strided convolution and a 3x3 pool with stride 2 (overlapping windows)."""
    return nn.Sequential(
        {
            "conv1": nn.Conv2d(1, 3, 4, stride=2, dtype=D),
            "relu1": nn.ReLU(),
            "pool1": nn.MaxPool2d(3, 2),
            "conv2": nn.Conv2d(3, 2, 2, dilation=2, dtype=D),
        }
    )


def three_pool_net():
    return nn.Sequential(
        {
            "conv1": nn.Conv2d(1, 2, 3, dtype=D),
            "pool1": nn.MaxPool2d(2),
            "conv2": nn.Conv2d(2, 2, 3, dtype=D),
            "pool2": nn.MaxPool2d(2),
            "conv3": nn.Conv2d(2, 2, 2, dtype=D),
            "pool3": nn.MaxPool2d(2),
            "score": nn.Conv2d(2, 2, 1, dtype=D),
        }
    )


NETS = {
    "two pools": (two_pool_net, 4, (2, 29, 31)),
    "strided conv": (strided_conv_net, 4, (1, 27, 24)),
    "three pools": (three_pool_net, 8, (1, 45, 40)),
}


@pytest.mark.parametrize("name", NETS)
def test_shift_and_stitch_equals_dilated_net_and_every_window(name, rng):
    make, factor, (C, H, W) = NETS[name]
    mf.manual_seed(1)
    net = make()
    assert stitch.output_stride(net) == factor
    x = rng.standard_normal((2, C, H, W))
    dense = stitch.shift_and_stitch(net, x, factor)
    with mf.no_grad():
        coarse = net(mf.Tensor(x)).data
        dilated = stitch.dilated_equivalent(net)(mf.Tensor(x)).data
    R = H - dense.shape[2] + 1  # one output per window position: the net's receptive field
    assert R == receptive.trace(net)[list(net._modules)[-1]].field.size
    assert dense.shape[2:] == (H - R + 1, W - R + 1) and dense.shape[2] > 2 * factor
    np.testing.assert_allclose(dilated, dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(dense[:, :, ::factor, ::factor], coarse)  # the unshifted pass is the net itself
    # Independent of both: dense output (i, j) is the net on the single window at (i, j).
    with mf.no_grad():
        for i, j in [(0, 0), (1, 2), (dense.shape[2] - 1, dense.shape[3] - 1), (factor + 1, 2 * factor - 1)]:
            window = net(mf.Tensor(x[:, :, i : i + R, j : j + R])).data
            assert window.shape[2:] == (1, 1)
            np.testing.assert_allclose(dense[:, :, i, j], window[:, :, 0, 0], rtol=1e-12, atol=1e-12)


def test_dilated_net_keeps_the_field_and_has_jump_one():
    net = two_pool_net()
    dilated = stitch.dilated_equivalent(net)
    before, after = receptive.trace(net)["conv3"].field, receptive.trace(dilated)["conv3"].field
    assert after.size == before.size == 18 and before.jump == 4 and after.jump == 1
    assert dilated.pool2.dilation == (2, 2) and dilated.conv3.dilation == (4, 4) and dilated.pool1.stride == (1, 1)
    assert dilated.conv1.weight.data is not net.conv1.weight.data
    np.testing.assert_array_equal(dilated.conv3.weight.data, net.conv3.weight.data)


def test_rarefied_filter_is_a_dilated_convolution(rng):
    x = rng.standard_normal((1, 2, 11, 12))
    w = rng.standard_normal((3, 2, 3, 2))
    big = stitch.rarefy(w, 3)
    assert big.shape == (3, 2, 7, 4)
    assert big[0, 0, 1, 0] == 0 and big[0, 0, 3, 3] == w[0, 0, 1, 1]
    np.testing.assert_allclose(F.conv2d(x, big).data, F.conv2d(x, w, dilation=3).data, rtol=1e-12)


def test_multiply_adds_by_hand():
    net = two_pool_net()
    # conv1 4x2x9 on 27x29; pool1 -> 13x14; conv2 5x4x9 on 11x12; pool2 -> 5x6; conv3 3x5x9 on 3x4
    expected = 4 * 27 * 29 * 18 + 5 * 11 * 12 * 36 + 3 * 3 * 4 * 45
    assert stitch.multiply_adds(net, (1, 2, 29, 31)) == expected
    assert stitch.multiply_adds(net, (2, 2, 29, 31)) == 2 * expected
    dilated = stitch.dilated_equivalent(net)
    # dilated: conv1 on 27x29, pool1 -> 26x28, conv2 (span 5) -> 22x24, pool2 (span 3) -> 20x22, conv3 (span 9) -> 12x14
    assert stitch.multiply_adds(dilated, (1, 2, 29, 31)) == 4 * 27 * 29 * 18 + 5 * 22 * 24 * 36 + 3 * 12 * 14 * 45
    assert stitch.shift_and_stitch_multiply_adds(net, (1, 2, 29, 31)) == sum(
        stitch.multiply_adds(net, (1, 2, 29 - dy, 31 - dx)) for dy in range(4) for dx in range(4)
    )


@pytest.mark.parametrize(
    "layer, match",
    [
        (nn.Conv2d(2, 2, 3, padding=1, dtype=D), r"has padding \(1, 1\); shift-and-stitch equals"),
        (nn.MaxPool2d(2, 2, ceil_mode=True), r"and ceil_mode"),
        (nn.AvgPool2d(2), r"is a AvgPool2d; only Conv2d, MaxPool2d"),
    ],
)
def test_dilated_equivalent_refuses_what_it_cannot_convert(layer, match):
    with pytest.raises((ValueError, TypeError), match=match):
        stitch.dilated_equivalent(nn.Sequential({"conv": nn.Conv2d(2, 2, 3, dtype=D), "bad": layer}))


def test_shift_and_stitch_with_the_wrong_factor(rng):
    with pytest.raises(ValueError, match=r"is the net's subsampling factor 8\?"):
        stitch.shift_and_stitch(two_pool_net(), rng.standard_normal((1, 2, 29, 31)), 8)
