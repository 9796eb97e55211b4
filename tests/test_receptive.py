"""minifcn.receptive: the traced fields are the real ones, and the crops come out as the reference's."""

from fractions import Fraction

import numpy as np
import pytest
from helpers import run_trunk

import minifcn as mf
import minifcn.nn as nn
from minifcn import receptive
from minifcn.models import VGG16, FCN8s, FCN8sAtOnce, FCN16s, FCN32s


@pytest.mark.parametrize("backbone", ["vgg16", "tiny"])
def test_crop_offsets_are_the_reference_values(backbone, monkeypatch):
    # Building VGG16 nets only to read their geometry: skip the 134M random weights.
    monkeypatch.setattr(nn.init.rng, "normal", lambda std, shape, dtype=np.float32: np.zeros(shape, dtype))
    monkeypatch.setattr(nn.init.rng, "uniform", lambda lo, hi, shape, dtype=np.float32: np.zeros(shape, dtype))
    assert FCN32s(backbone=backbone).crop_offsets == {"score": 19}
    assert FCN16s(backbone=backbone).crop_offsets == {"score_pool4c": 5, "score": 27}
    expected = {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
    assert FCN8s(backbone=backbone).crop_offsets == expected
    assert FCN8sAtOnce(backbone=backbone).crop_offsets == expected


def test_alexnet_crop_is_the_reference_18():
    assert FCN32s(n_class=2, backbone="alexnet").crop_offsets == {"score": 18}


def test_trace_of_vgg16_stages():
    rows = receptive.trace(FCN8s(n_class=2, backbone="tiny"), input_size=500)
    # Size, jump and offset of each stage, worked out by hand from the layer rule.
    expected = {
        "conv1_1": (3, 1, -99),
        "pool1": (6, 2, -98.5),
        "pool2": (16, 4, -97.5),
        "pool3": (44, 8, -95.5),
        "pool4": (100, 16, -91.5),
        "pool5": (212, 32, -83.5),
        "fc6": (404, 32, 12.5),
        "upscore2": (436, 16, -11.5),
        "upscore8": (460, 1, -31),
    }
    for name, (size, jump, offset) in expected.items():
        f = rows[name].field
        assert (f.size, f.jump, f.offset) == (size, jump, Fraction(offset)), name
    assert rows["conv1_1"].length == 698 and rows["pool5"].length == 22 and rows["fc7"].length == 16
    text = str(rows)
    assert (
        "pool4" in text
        and "-91.5" in text
        and text.splitlines()[0].split()[:4] == ["layer", "kind", "kernel", "stride"]
    )


def _positive_trunk(model, upto, pool_kind):
    """The trunk of ``model`` up to ``upto`` as a list of layers, with positive weights (every ReLU passes),
    and max pooling replaced by average pooling of the same geometry when pool_kind is 'avg'."""
    layers = []
    for name in model.trunk_to(upto):
        layer = getattr(model, name)
        if isinstance(layer, nn.MaxPool2d) and pool_kind == "avg":
            layer = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode)
        layers.append((name, layer))
    return layers


def _run(layers, x):
    for _, layer in layers:
        x = layer(x)
    return x


def _expected_support(field, u, length):
    lo, hi = field.extent(u)
    inside = np.zeros(length, bool)
    inside[max(0, int(np.ceil(lo))) : min(length - 1, int(np.floor(hi))) + 1] = True
    return inside


@pytest.mark.parametrize("layer", ["pool1", "conv2_2", "pool3", "conv4_3", "pool4"])
def test_gradient_of_one_unit_is_nonzero_exactly_inside_its_traced_field(layer, rng):
    """Positive weights, positive input, average pooling (same geometry as the max pooling it replaces, so
    the same fields): every path from a pixel to the unit carries a positive product, so the gradient is
    positive exactly where the unit's field covers the image, and zero elsewhere."""
    model = FCN8s(n_class=2, backbone="tiny", dtype=np.float64).eval()
    for p in model.parameters():
        p.data = np.abs(p.data) + 0.01
    layers = _positive_trunk(model, layer, "avg")
    H, W = 100, 76
    x = mf.Tensor(rng.uniform(0.5, 1.0, (1, 3, H, W)), requires_grad=True)
    y = _run(layers, x)
    fy, fx = receptive.trace(model, H, axis=0)[layer].field, receptive.trace(model, W, axis=1)[layer].field
    u, v = y.shape[2] // 2, y.shape[3] // 2 + 1  # a unit near the middle
    lo, hi = fy.extent(u)
    assert 0 < lo or hi < H - 1 or layer == "pool4"  # the field's edge falls inside the image, so it is tested
    g = np.zeros(y.shape)
    g[0, 0, u, v] = 1.0
    y.backward(g)
    support = x.grad[0].sum(axis=0) > 0
    expected = np.outer(_expected_support(fy, u, H), _expected_support(fx, v, W))
    np.testing.assert_array_equal(support, expected)


def test_max_pool_fields_by_lighting_one_pixel(rng):
    """With max pooling the gradient follows only the argmax, so probe dependence instead: all-ones weights,
    zero biases, a black image with one lit pixel. A unit lights up exactly when the pixel is in its field."""
    model = FCN8s(n_class=2, backbone="tiny", dtype=np.float64).eval()
    for name, p in model.named_parameters():
        p.data = np.zeros_like(p.data) if name.endswith("bias") else np.ones_like(p.data)
    H = W = 64
    rows = receptive.trace(model, H)
    for layer in ("pool2", "pool3", "pool4"):
        layers = _positive_trunk(model, layer, "max")
        f = rows[layer].field
        for py, px in rng.integers(0, H, size=(4, 2)):
            x = np.zeros((1, 3, H, W))
            x[0, :, py, px] = 1.0
            lit = _run(layers, mf.Tensor(x)).data[0, 0] > 0
            centres = f.offset + f.jump * np.arange(lit.shape[0])
            sees = np.abs(centres - np.array([py, px])[:, None]) <= (f.size - 1) / 2  # (2, units)
            np.testing.assert_array_equal(lit, np.outer(sees[0], sees[1]), err_msg=f"{layer}, pixel {(py, px)}")


def test_summary_shapes_match_a_real_forward(rng):
    model = FCN8s(n_class=3, backbone="tiny").eval()
    x = mf.Tensor(rng.standard_normal((2, 3, 45, 61)).astype(np.float32))
    table = mf.summary(model, x.shape)
    shapes = {name: shape for name, _, shape, *_ in table}
    for name in model.trunk_names:
        assert shapes[name] == run_trunk(model, x, name).shape, name
    assert shapes["upscore8"][:2] == (2, 3)
    assert table.total_params == sum(p.size for p in model.parameters())
    assert table.crops == {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
    assert "total parameters" in str(table)


def test_summary_of_a_classifier_follows_into_the_fully_connected_head():
    table = mf.summary(VGG16(n_class=10, backbone="tiny"), (1, 3, 224, 224))
    shapes = {name: shape for name, _, shape, *_ in table}
    assert shapes["pool5"] == (1, 128, 7, 7) and shapes["flatten"] == (1, 128 * 49) and shapes["fc8"] == (1, 10)


def test_crop_that_cannot_align_is_an_error():
    class Misaligned(nn.Module):
        CROPS = {"score": ("up", "input")}

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 4)  # even kernel: centres fall between pixels
            self.up = nn.ConvTranspose2d(2, 2, 2, stride=1)

        def paths(self):
            return {"up": ["conv", "up"]}

    with pytest.raises(ValueError, match=r"crop score: up would need offset -1 to align with input"):
        receptive.crop_offsets(Misaligned())

    class OtherGrid(Misaligned):
        CROPS = {"score": ("conv", "input")}

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, stride=2)

        def paths(self):
            return {"conv": ["conv"]}

    with pytest.raises(ValueError, match=r"conv \(jump 2\) and input \(jump 1\) are on different grids"):
        receptive.crop_offsets(OtherGrid())

    class NoChain(Misaligned):
        CROPS = {"score": ("nowhere", "input")}

    with pytest.raises(ValueError, match=r"crop score needs the map 'nowhere', but NoChain.paths\(\) has no chain"):
        receptive.crop_offsets(NoChain())


def test_tracing_an_unknown_layer_names_it():
    with pytest.raises(TypeError, match=r"cannot trace layer fc = Linear\(3, 2, bias=True\)"):
        receptive.step(receptive.INPUT, nn.Sequential({"fc": nn.Linear(3, 2)}).fc)


def test_crop_offsets_must_agree_along_both_axes_and_summary_checks_its_shape():
    class Lopsided(nn.Module):
        CROPS = {"score": ("conv", "input")}

        def __init__(self, padding):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, (3, 5), padding=padding)

        def paths(self):
            return {"conv": ["conv"]}

    assert receptive.crop_offsets(Lopsided((1, 2))) == {"score": 0}
    with pytest.raises(ValueError, match=r"crop score: offsets differ along height and width: \[0, 1\]"):
        receptive.crop_offsets(Lopsided((1, 3)))
    with pytest.raises(ValueError, match=r"input_shape must be \(N, C, H, W\), got \(3, 8, 8\)"):
        mf.summary(Lopsided((1, 2)), (3, 8, 8))


@pytest.mark.parametrize("Net, least", [(FCN32s, 81), (FCN16s, 73), (FCN8s, 69)])
def test_less_padding_moves_only_the_last_crop(Net, least):
    at_100 = receptive.crop_offsets(Net(3, "tiny"))
    net = Net(3, "tiny", pad=least)  # the least padding: the scores' first unit sits on the image's first pixel
    assert net.crop_offsets == {**at_100, "score": at_100["score"] - (100 - least)} and net.crop_offsets["score"] == 0
    with pytest.raises(ValueError, match=f"pad {least - 1} is too small: below {least}"):
        Net(3, "tiny", pad=least - 1)


@pytest.mark.parametrize("Net, least_at_7", [(FCN32s, 81), (FCN16s, 73), (FCN8s, 69)])
@pytest.mark.parametrize("k", [6, 5, 4])
def test_a_smaller_fc6_needs_less_padding(Net, least_at_7, k):
    """fc6 is a valid convolution at stride 32: its first unit sits (k - 1) / 2 cells in, so each size less moves
    every score half a cell (16 pixels) back towards the image's first pixel, and the least padding falls by 16."""
    least = least_at_7 - 16 * (7 - k)
    net = Net(3, "tiny", pad=least, fc6_kernel=k)
    assert net.fc6.kernel_size == (k, k) and net.fc6_kernel == k and net.crop_offsets["score"] == 0
    with pytest.raises(ValueError, match=f"and a {k}x{k} fc6: pad {least - 1} is too small: below {least}"):
        Net(3, "tiny", pad=least - 1, fc6_kernel=k)
    assert net.smallest_input() == receptive.smallest_input(net) and f"fc6_kernel={k}" in repr(net)


@pytest.mark.parametrize(
    "args, message",
    [
        ((FCN8s, "tiny", 3), "its skip maps fall short of the upsampled scores for inputs of many sizes"),
        ((FCN8s, "tiny", 1), "score_pool4 would need offset -1 to align with upscore2"),
        ((FCN8s, "tiny", 0), "fc6_kernel 0: must be at least 1"),
        ((FCN8s, "tiny", 2.0), "fc6_kernel must be a whole number or None, got 2.0"),
        ((FCN32s, "tiny-googlenet", 5), "fc6_kernel 5: tiny-googlenet has no fc6"),
    ],
)
def test_an_fc6_that_cannot_align_is_refused(args, message):
    Net, backbone, k = args
    with pytest.raises(ValueError, match=message):
        Net(3, backbone, fc6_kernel=k)


def test_an_fc6_of_3_fits_only_every_other_size():
    """Why 3x3 is refused: its skip maps end a unit short of the upsampled scores for half of all input sizes."""
    net = FCN8s(3, "tiny", pad=69, fc6_kernel=5)  # a net that builds, then its fc6 made 3x3 in place
    net.fc6 = nn.Conv2d(net.fc6.in_channels, net.fc6.out_channels, 3)
    net.crop_offsets = receptive.crop_offsets(net)
    fitting = [size for size in range(400, 464) if receptive.fits(net, size)]
    assert 0 < len(fitting) < 64 and receptive.smallest_input(net) == 513


@pytest.mark.parametrize("pad, k", [(69, 7), (37, 5)])
def test_smallest_input_is_where_the_net_starts_to_run(pad, k):
    net = FCN8s(3, "tiny", pad=pad, fc6_kernel=k).eval()
    assert receptive.smallest_input(net) == 57 and receptive.smallest_input(FCN8s(3, "tiny")) == 1
    for size in (50, 56, 57, 58, 63, 64, 90):  # fits() against the net itself, its input-size check bypassed
        x = mf.Tensor(np.zeros((1, 3, size, size + 3), np.float32))
        try:
            with mf.no_grad():
                runs = net.decode(net.features(x), (size, size + 3)).shape[2:] == (size, size + 3)
        except ValueError:
            runs = False
        assert receptive.fits(net, size) == runs == (size >= 57), size
    with pytest.raises(ValueError, match=f"pad {pad}.* needs inputs of at least 57 pixels a side, got 56x60"):
        net(mf.Tensor(np.zeros((1, 3, 56, 60), np.float32)))
