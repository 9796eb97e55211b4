"""GoogLeNet's pieces (Table 1's third trunk): LRN forward and backward, the inception module, FCN-32s on it."""

import os

import numpy as np
import pytest
from helpers import randomise

import minifcn as mf
import minifcn.functional as F
import minifcn.nn as nn
from minifcn import receptive
from minifcn.gradcheck import gradcheck
from minifcn.models import FCN8s, FCN32s


def lrn_loop(x, size, alpha, beta, k):
    """LRN by its definition, one value at a time."""
    N, C, H, W = x.shape
    y = np.empty_like(x)
    r = size // 2
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    energy = sum(x[n, j, h, w] ** 2 for j in range(max(0, c - r), min(C, c + r + 1)))
                    y[n, c, h, w] = x[n, c, h, w] / (k + alpha / size * energy) ** beta
    return y


@pytest.mark.parametrize(
    "size, alpha, beta, k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.75, 2.0), (1, 1.0, 0.5, 1.0), (7, 2.0, 1.0, 0.5)]
)
def test_lrn_forward_matches_the_definition(size, alpha, beta, k, rng):
    x = rng.standard_normal((2, 6, 3, 4)) * 3
    np.testing.assert_allclose(
        F.local_response_norm(x, size, alpha, beta, k).data, lrn_loop(x, size, alpha, beta, k), rtol=1e-12
    )


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.75, 2.0), (5, 3.0, 1.0, 0.5)])
def test_lrn_gradcheck(size, alpha, beta, k, rng):
    x = mf.Tensor(rng.standard_normal((2, 7, 3, 3)) * 2, requires_grad=True)
    gradcheck(lambda x: F.local_response_norm(x, size, alpha, beta, k), [x])


def test_lrn_matches_pytorch():
    """PyTorch's own numbers (tests/data/make_reader_fixtures.py wrote them): size 5, alpha 0.3, beta 0.75, k 2."""
    fixtures = np.load(os.path.join(os.path.dirname(__file__), "data", "reader_fixtures.npz"))
    y = F.local_response_norm(fixtures["lrn/x"], 5, 0.3, 0.75, 2.0).data
    np.testing.assert_allclose(y, fixtures["lrn/y"], rtol=1e-10)


@pytest.mark.parametrize("size, match", [(4, "positive odd int"), (0, "positive odd int")])
def test_lrn_refuses_even_sizes(size, match):
    with pytest.raises(ValueError, match=match):
        F.local_response_norm(np.ones((1, 2, 2, 2)), size)


def test_lrn_layer_names_itself_in_errors():
    model = nn.Sequential({"norm1": nn.LocalResponseNorm(5)})
    with pytest.raises(ValueError, match=r"layer norm1 = LocalResponseNorm\(size=5.*must be a floating \(N, C, H, W\)"):
        model(mf.Tensor(np.ones((2, 3), np.float32)))


def test_inception_concatenates_its_four_branches(rng):
    block = nn.Inception(5, (2, 3, 4, 1, 2, 3), dtype=np.float64)
    assert block.out_channels == 2 + 4 + 2 + 3
    x = rng.standard_normal((2, 5, 6, 7))
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    conv = lambda layer, a: F.conv2d(a, layer.weight.data, layer.bias.data, 1, layer.padding).data  # noqa: E731
    expected = np.concatenate(
        [
            relu(conv(block.conv1x1, x)),
            relu(conv(block.conv3x3, relu(conv(block.conv3x3_reduce, x)))),
            relu(conv(block.conv5x5, relu(conv(block.conv5x5_reduce, x)))),
            relu(conv(block.pool_proj, F.max_pool2d(x, 3, 1, 1).data)),
        ],
        axis=1,
    )
    np.testing.assert_allclose(block(mf.Tensor(x)).data, expected, rtol=1e-12)
    xt = mf.Tensor(x, requires_grad=True)
    gradcheck(lambda x, *params: block(x), [xt] + list(block.parameters()), max_elements=4, n_directions=2)


def test_inception_field_is_its_5x5_branch(rng):
    """A unit of the module's output depends on the 5x5 window around it and on nothing outside."""
    block = nn.Inception(2, (1, 1, 1, 1, 1, 1), dtype=np.float64)
    for p in block.parameters():
        p.data = np.abs(p.data) + 0.1  # every ReLU passes for a positive input
    x = mf.Tensor(rng.random((1, 2, 11, 11)) + 0.1, requires_grad=True)
    y = block(x)
    seed = np.zeros(y.shape)
    seed[0, 2, 5, 5] = 1.0  # a unit of the 5x5 branch
    y.backward(seed)
    rows = np.flatnonzero(np.abs(x.grad).sum(axis=(0, 1, 3)))
    assert (rows.min(), rows.max()) == (3, 7)
    field = receptive.step(receptive.INPUT, block)
    assert (field.size, field.jump, field.offset) == (5, 1, 0)


def test_fcn_googlenet_geometry():
    """Table 1: parameters and receptive field of the three trunks, and a crop derived for GoogLeNet."""
    counts, fields = {}, {}
    for backbone in ("alexnet", "vgg16", "googlenet"):
        model = FCN32s(n_class=21, backbone=backbone)
        trunk = sum(p.size for name, p in model.named_parameters() if not name.startswith(("score_fr", "upscore")))
        counts[backbone] = trunk / 1e6
        fields[backbone] = receptive.trace(model)[model.trunk_names[-1]].field.size
    assert round(counts["alexnet"]) == 57 and round(counts["vgg16"]) == 134 and round(counts["googlenet"]) == 6
    assert fields == {"alexnet": 355, "vgg16": 404, "googlenet": 715}
    # The paper's 907 for GoogLeNet counts the 7x7 average pooling the FCN drops: 715 + 6 * 32.
    with_pool = receptive.step(receptive.trace(model)["inception_5b"].field, nn.AvgPool2d(7, 1))
    assert with_pool.size == 907
    assert model.crop_offsets == {"score": 98}


@pytest.mark.slow
def test_tiny_fcn_googlenet_any_size_and_gradcheck(rng):
    model = FCN32s(n_class=3, backbone="tiny-googlenet", dtype=np.float64, learnable_upsampling=True).eval()
    randomise(model, rng)  # small random values everywhere (no ReLU sits near a kink)
    with mf.no_grad():
        for size in (1, 9, 40):
            assert model(mf.Tensor(np.zeros((1, 3, size, size + 2)))).shape == (1, 3, size, size + 2)
    x = mf.Tensor(rng.standard_normal((1, 3, 9, 12)), requires_grad=True)
    labels = rng.integers(0, 3, (1, 9, 12))
    gradcheck(
        lambda x, *params: F.softmax_cross_entropy(model(x), labels),
        [x] + list(model.parameters()),
        max_elements=1,
        n_directions=2,
        atol=1e-7,
        rtol=1e-4,
    )


def test_googlenet_is_fcn32s_only():
    with pytest.raises(ValueError, match=r"FCN8s: backbone 'googlenet' is not available.*GoogLeNet have only FCN32s"):
        FCN8s(n_class=2, backbone="googlenet")


def test_train_fcn_googlenet_from_the_command_line(tmp_path, capsys):
    from minifcn import cli, train
    from minifcn.checkpoint import load_checkpoint, model_from_checkpoint

    args = [
        "--model",
        "fcn32s",
        "--backbone",
        "tiny-googlenet",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--iters",
        "2",
        "--eval-every",
        "2",
        "--eval-limit",
        "2",
        "--samples",
        "0",
        "--out",
        str(tmp_path),
    ]
    assert cli.run(train.main, args) == 0
    model = model_from_checkpoint(load_checkpoint(str(tmp_path / "last.npz")))
    assert model.backbone == "tiny-googlenet" and model.crop_offsets == {"score": 98}
    assert cli.run(train.main, ["--model", "fcn8s", "--backbone", "googlenet"] + args[4:]) == 1
    assert "--backbone googlenet exists for --model fcn32s only" in capsys.readouterr().err


def test_caffe_googlenet_weights_load_by_name(tmp_path, rng):
    """bvlc_googlenet's layer names ('inception_4a/5x5_reduce' ...) land on the googlenet backbone's layers."""
    from test_weights import write_caffemodel

    from minifcn import surgery, weights

    source = FCN32s(n_class=2, backbone="tiny-googlenet")
    caffe_names = {"conv1": "conv1/7x7_s2", "conv2_reduce": "conv2/3x3_reduce", "conv2": "conv2/3x3"}
    branches = {
        "conv1x1": "1x1",
        "conv3x3_reduce": "3x3_reduce",
        "conv3x3": "3x3",
        "conv5x5_reduce": "5x5_reduce",
        "conv5x5": "5x5",
        "pool_proj": "pool_proj",
    }
    layers = []
    for name, module in source.named_modules():
        if isinstance(module, nn.Conv2d) and not name.startswith("score"):
            if "." in name:
                block, branch = name.split(".")
                caffe = f"{block}/{branches[branch]}"
            else:
                caffe = caffe_names[name]
            layers.append(
                (
                    caffe,
                    [
                        rng.standard_normal(module.weight.shape).astype(np.float32),
                        rng.standard_normal(module.bias.shape).astype(np.float32),
                    ],
                )
            )
    layers.append(
        ("loss3/classifier", [rng.standard_normal((1000, 64)).astype(np.float32), np.zeros(1000, np.float32)])
    )
    write_caffemodel(tmp_path / "googlenet.caffemodel", layers, v1=False)
    state = weights.read(tmp_path / "googlenet.caffemodel")
    assert "inception_4a.conv5x5_reduce.weight" in state and "conv1.weight" in state
    target = FCN32s(n_class=2, backbone="tiny-googlenet")
    report = surgery.transplant(state, target)
    assert report.not_in_model == ["loss3/classifier.weight", "loss3/classifier.bias"]
    assert len(report.copied) == 2 * (len(layers) - 1)
    np.testing.assert_array_equal(target.inception_5b.conv3x3.weight.data, dict(layers)["inception_5b/3x3"][0])


def test_lrn_refuses_negative_constants():
    with pytest.raises(ValueError, match=r"need alpha >= 0, beta >= 0, k > 0; got -1.0, 0.75, 1.0"):
        F.local_response_norm(np.ones((1, 2, 2, 2)), 3, -1.0)
