"""minifcn.costs: each layer's multiply-adds and bytes, against counts made by hand, and the model left as it was."""

import numpy as np
import pytest

import minifcn.functional as F
import minifcn.nn as nn
from minifcn import stitch
from minifcn.autograd import Function
from minifcn.costs import layer_costs
from minifcn.models import VGG16, FCN8s


def test_a_small_net_counted_by_hand():
    net = nn.Sequential(
        {
            "conv": nn.Conv2d(3, 4, 3, padding=1),
            "relu": nn.ReLU(),
            "pool": nn.MaxPool2d(2, 2),
            "up": nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1),
        }
    )
    rows = layer_costs(net, (1, 3, 8, 8))
    assert [(r.name, r.op, r.output) for r in rows] == [
        ("conv", "Conv2d", (1, 4, 8, 8)),
        ("relu", "ReLU", (1, 4, 8, 8)),
        ("pool", "MaxPool2d", (1, 4, 4, 4)),
        ("up", "ConvTranspose2d", (1, 2, 8, 8)),
    ]
    f = 4  # bytes per float32
    # conv: each of 4x8x8 outputs is a dot product of 3x3x3; reads x, w, b; writes y
    assert rows[0].multiply_adds == 4 * 8 * 8 * 3 * 3 * 3
    assert (rows[0].bytes_read, rows[0].bytes_written) == ((3 * 64 + 4 * 27 + 4) * f, 4 * 64 * f)
    assert (rows[1].multiply_adds, rows[1].bytes_read, rows[1].bytes_written) == (0, 4 * 64 * f, 4 * 64 * f)
    assert (rows[2].multiply_adds, rows[2].bytes_read, rows[2].bytes_written) == (0, 4 * 64 * f, 4 * 16 * f)
    # the transposed convolution: each of 4x4x4 inputs meets 2x4x4 weights
    assert rows[3].multiply_adds == 4 * 16 * 2 * 4 * 4
    assert rows[3].bytes_read == (4 * 16 + 4 * 2 * 16 + 2) * f and rows[3].bytes_written == 2 * 64 * f


def test_linear_and_an_fcns_convolutions_agree_with_other_counts():
    classifier = VGG16(n_class=5, backbone="tiny").eval()
    rows = layer_costs(classifier, (2, 3, 224, 224))
    fc = [r for r in rows if r.op == "Linear"]
    fc8 = classifier.fc8
    assert [r.name for r in fc][-1] == "fc8" and fc[-1].multiply_adds == 2 * fc8.in_features * fc8.out_features

    fcn = FCN8s(n_class=3, backbone="tiny").eval()
    rows = layer_costs(fcn, (1, 3, 50, 70))
    trunk = nn.Sequential({name: getattr(fcn, name) for name in fcn.trunk_names})
    counted = sum(r.multiply_adds for r in rows if r.op == "Conv2d" and r.name in fcn.trunk_names)
    assert counted == stitch.multiply_adds(trunk, (1, 3, 50, 70))
    assert [r.name for r in rows if r.op == "Crop"] == ["crop"] * 3 and rows[-1].name == "crop"


def test_backward_is_timed_and_the_model_is_left_as_it_was():
    fcn = FCN8s(n_class=3, backbone="tiny")
    call = Function.__call__
    before = {cls: dict(cls.__dict__) for cls in _all_functions()}
    labels = np.zeros((1, 30, 30), int)
    rows = layer_costs(fcn, (1, 3, 30, 30), loss=lambda s: F.softmax_cross_entropy(s, labels), backward=True)
    assert rows[-1].name == "loss" and rows[-1].op == "SoftmaxCrossEntropy"
    assert all(r.backward_s > 0 for r in rows if r.op == "Conv2d")
    assert Function.__call__ is call and all(dict(cls.__dict__) == d for cls, d in before.items())
    assert all("forward" not in m.__dict__ for _, m in fcn.named_modules())
    assert all(p.grad is not None for p in fcn.parameters() if p.requires_grad)
    with pytest.raises(ValueError):  # errors inside still restore everything
        layer_costs(fcn, (1, 4, 30, 30))
    assert Function.__call__ is call and all("forward" not in m.__dict__ for _, m in fcn.named_modules())


def _all_functions(cls=Function):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_functions(sub)
