"""RGB-D fusion (Sec. 5, NYUDv2): early fusion grows conv1's input, late fusion sums two streams' scores."""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
from minifcn import surgery
from minifcn.gradcheck import gradcheck
from minifcn.models import FCN8s, FCN32s
from minifcn.models.fusion import LateFusionFCN32s


def _randomise(model, rng, scale=0.5):
    for p in model.parameters():
        fan_in = p.data[0].size if p.ndim > 1 else 1
        p.data = rng.standard_normal(p.shape) * (scale / np.sqrt(fan_in))
        p.requires_grad = True


def test_narrow_forward_and_gradcheck(rng):
    x = rng.standard_normal((2, 5, 3, 4))
    np.testing.assert_array_equal(F.narrow(x, 1, 3, 2).data, x[:, 3:5])
    np.testing.assert_array_equal(F.narrow(x, -1, 1, 2).data, x[..., 1:3])
    gradcheck(lambda t: F.narrow(t, 1, 1, 3), [mf.Tensor(x, requires_grad=True)])
    with pytest.raises(ValueError, match=r"narrow: \[4, 6\) is not inside axis 1 of shape \(2, 5, 3, 4\)"):
        F.narrow(x, 1, 4, 2)


def test_early_fusion_starts_as_the_rgb_net(rng):
    rgb_net = FCN8s(n_class=3, backbone="tiny", dtype=np.float64).eval()
    _randomise(rgb_net, rng)
    fused = surgery.add_input_channels(FCN8s(n_class=3, backbone="tiny", dtype=np.float64).eval(), 1)
    fused.load_state_dict({k: v for k, v in rgb_net.state_dict().items() if k != "conv1_1.weight"}, strict=False)
    surgery_source = rgb_net.conv1_1.weight.data
    fused.conv1_1.weight.data = np.concatenate([surgery_source, surgery_source.mean(axis=1, keepdims=True)], axis=1)
    assert fused.conv1_1.weight.shape == (4, 4, 3, 3) and fused.conv1_1.in_channels == 4
    image = rng.standard_normal((1, 3, 20, 22))
    with mf.no_grad():
        no_depth = fused(mf.Tensor(np.concatenate([image, np.zeros((1, 1, 20, 22))], axis=1))).data
        np.testing.assert_allclose(no_depth, rgb_net(mf.Tensor(image)).data, rtol=1e-12, atol=1e-12)
        # a depth channel acts like the grey-level image through the mean filter at first
        depth = rng.standard_normal((1, 1, 20, 22))
        first = fused.conv1_1(mf.Tensor(np.concatenate([image, depth], axis=1))).data
        expected = rgb_net.conv1_1(mf.Tensor(image)).data + F.conv2d(depth, surgery_source.mean(axis=1, keepdims=True),
                                                                      padding=100).data  # fmt: skip
        np.testing.assert_allclose(first, expected, rtol=1e-12, atol=1e-12)


def test_add_input_channels_keeps_the_multipliers_and_checks_its_argument():
    net = FCN32s(n_class=2, backbone="tiny")
    surgery.add_input_channels(net, 2)
    assert net.conv1_1.weight.shape[1] == 5 and net.conv1_1.weight.lr_mult == 1.0
    np.testing.assert_allclose(net.conv1_1.weight.data[:, 3], net.conv1_1.weight.data[:, :3].mean(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="extra must be a positive integer"):
        surgery.add_input_channels(net, 0)


def test_late_fusion_is_the_sum_of_the_streams_at_first(rng):
    rgb_net, depth_net = (FCN32s(n_class=3, backbone="tiny", dtype=np.float64).eval() for _ in range(2))
    _randomise(rgb_net, rng)
    _randomise(depth_net, rng)
    depth_net.upscore.weight.data = rgb_net.upscore.weight.data.copy()  # both bilinear in practice
    fused = LateFusionFCN32s(rgb_net, depth_net).eval()
    assert not hasattr(fused.depth, "upscore")
    rgbd = rng.standard_normal((2, 4, 19, 25))
    depth3 = np.repeat(rgbd[:, 3:], 3, axis=1)
    with mf.no_grad():
        expected = rgb_net(mf.Tensor(rgbd[:, :3])).data + depth_net(mf.Tensor(depth3)).data
        np.testing.assert_allclose(fused(mf.Tensor(rgbd)).data, expected, rtol=1e-10, atol=1e-12)
    assert fused.rgb.conv1_1.weight is not rgb_net.conv1_1.weight  # the streams are copies
    assert any(name.startswith("depth.fc7") for name, _ in fused.named_parameters())


def test_late_fusion_gradcheck(rng):
    rgb_net, depth_net = (FCN32s(n_class=2, backbone="tiny", dtype=np.float64).eval() for _ in range(2))
    fused = LateFusionFCN32s(rgb_net, depth_net).eval()
    _randomise(fused, rng)
    x = mf.Tensor(rng.standard_normal((1, 4, 9, 11)), requires_grad=True)
    labels = rng.integers(0, 2, (1, 9, 11))
    gradcheck(lambda x, *p: F.softmax_cross_entropy(fused(x), labels), [x] + list(fused.parameters()),
              max_elements=1, n_directions=2, atol=1e-7, rtol=1e-4)  # fmt: skip


def test_late_fusion_errors():
    with pytest.raises(ValueError, match=r"the streams differ: rgb has 3 classes on 'tiny', depth 2 on 'tiny'"):
        LateFusionFCN32s(FCN32s(3, "tiny"), FCN32s(2, "tiny"))
    with pytest.raises(TypeError, match="the depth stream must be an FCN32s, got FCN8s"):
        LateFusionFCN32s(FCN32s(3, "tiny"), FCN8s(3, "tiny"))
    with pytest.raises(ValueError, match=r"input must be \(N, 4, H, W\), RGB then depth; got shape \(1, 3, 8, 8\)"):
        LateFusionFCN32s(FCN32s(3, "tiny"), FCN32s(3, "tiny"))(mf.Tensor(np.zeros((1, 3, 8, 8), np.float32)))
