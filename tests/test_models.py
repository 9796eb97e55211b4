"""The paper's networks: geometry, parameters, forward wiring, end-to-end gradients, state round trips."""

import numpy as np
import pytest
from helpers import randomise

import minifcn as mf
import minifcn.functional as F
import minifcn.nn as nn
from minifcn.gradcheck import gradcheck
from minifcn.models import VGG16, AlexNet, FCN8s, FCN8sAtOnce, FCN16s, FCN32s

FCNS = [FCN32s, FCN16s, FCN8s, FCN8sAtOnce]
TRUNK = [
    "conv1_1",
    "conv1_2",
    "conv2_1",
    "conv2_2",
    "conv3_1",
    "conv3_2",
    "conv3_3",
    "conv4_1",
    "conv4_2",
    "conv4_3",
    "conv5_1",
    "conv5_2",
    "conv5_3",
    "fc6",
    "fc7",
]


@pytest.fixture(scope="module")
def vgg_fcn8s():
    mf.manual_seed(0)
    return FCN8s(n_class=4, backbone="vgg16").eval()


@pytest.mark.parametrize("size", [(1, 1), (1, 37), (17, 3), (65, 33)])
def test_vgg16_fcn8s_scores_have_the_input_size_for_odd_sizes(vgg_fcn8s, size, rng):
    x = mf.Tensor(rng.standard_normal((1, 3) + size).astype(np.float32))
    with mf.no_grad():
        assert vgg_fcn8s(x).shape == (1, 4) + size


@pytest.mark.parametrize("cls", FCNS)
@pytest.mark.parametrize("size", [(1, 1), (2, 5), (31, 32), (33, 64), (97, 50)])
def test_tiny_fcns_score_every_pixel(cls, size, rng):
    model = cls(n_class=3, backbone="tiny").eval()
    x = mf.Tensor(rng.standard_normal((2, 3) + size).astype(np.float32))
    with mf.no_grad():
        assert model(x).shape == (2, 3) + size


@pytest.mark.parametrize("size", [(1, 1), (30, 47), (64, 64)])
def test_alexnet_fcn32s_scores_every_pixel(size, rng):
    model = FCN32s(n_class=2, backbone="alexnet").eval()
    with mf.no_grad():
        assert model(mf.Tensor(rng.standard_normal((1, 3) + size).astype(np.float32))).shape == (1, 2) + size
    assert model.conv1.padding == (100, 100) and model.upscore.kernel_size == (63, 63)
    assert model.fc6.weight.shape == (4096, 256, 6, 6)


def test_parameter_names_shapes_and_multipliers_follow_the_reference():
    model = FCN8s(n_class=21, backbone="tiny")
    names = list(model.state_dict())
    trunk = [f"{layer}.{kind}" for layer in TRUNK for kind in ("weight", "bias")]
    assert names == trunk + [
        "score_fr.weight",
        "score_fr.bias",
        "upscore2.weight",
        "score_pool4.weight",
        "score_pool4.bias",
        "upscore_pool4.weight",
        "score_pool3.weight",
        "score_pool3.bias",
        "upscore8.weight",
    ]
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert (p.lr_mult, p.decay_mult) == (2.0, 0.0), name
        elif name.startswith("upscore"):
            assert p.lr_mult == 0.0 and not p.requires_grad, name  # fixed bilinear upsampling
        else:
            assert (p.lr_mult, p.decay_mult) == (1.0, 1.0), name
    assert model.conv1_1.padding == (100, 100) and model.pool1.ceil_mode
    assert model.fc6.kernel_size == (7, 7) and model.fc7.kernel_size == (1, 1)
    assert (model.upscore2.kernel_size, model.upscore2.stride) == ((4, 4), (2, 2))
    assert (model.upscore8.kernel_size, model.upscore8.stride) == ((16, 16), (8, 8))
    assert model.upscore8.bias is None
    assert isinstance(model.drop6, nn.Dropout) and model.drop7.p == 0.5


def test_vgg16_fcn_has_the_papers_widths(vgg_fcn8s):
    assert vgg_fcn8s.fc6.weight.shape == (4096, 512, 7, 7) and vgg_fcn8s.fc7.weight.shape == (4096, 4096, 1, 1)
    assert vgg_fcn8s.score_pool4.weight.shape == (4, 512, 1, 1) and vgg_fcn8s.score_pool3.weight.shape == (4, 256, 1, 1)
    vgg16_convs = 14_714_688  # conv1_1 ... conv5_3 with biases, as in the ImageNet VGG16
    fc6, fc7 = 4096 * 512 * 49 + 4096, 4096 * 4096 + 4096
    scores = (4 * 4096 + 4) + (4 * 512 + 4) + (4 * 256 + 4)  # score_fr, score_pool4, score_pool3
    upsampling = 4 * 4 * (4 * 4 + 4 * 4 + 16 * 16)  # upscore2, upscore_pool4, upscore8: no bias
    assert sum(p.size for p in vgg_fcn8s.parameters()) == vgg16_convs + fc6 + fc7 + scores + upsampling


def test_small_bn_is_tiny_bn_wider_with_vgg16s_geometry():
    small, tiny = FCN8s(n_class=4, backbone="small-bn"), FCN8s(n_class=4, backbone="tiny-bn")
    assert [n for n, _ in small.named_parameters()] == [n for n, _ in tiny.named_parameters()]  # batch norm throughout
    assert small.crop_offsets == tiny.crop_offsets and small.smallest_input() == tiny.smallest_input()
    widths, c = (16, 32, 64, 128, 256), (3, 16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 256, 256, 256)
    convs = [getattr(small, f"conv{s}_{i}") for s, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)]
    assert [(conv.weight.shape[1], conv.weight.shape[0]) for conv in convs] == list(zip(c[:-1], c[1:]))
    assert [convs[i].weight.shape[0] for i in (1, 3, 6, 9, 12)] == list(widths)
    assert small.fc6.weight.shape == (512, 256, 7, 7) and small.fc7.weight.shape == (512, 512, 1, 1)
    assert small.bn7.num_features == 512 and not any(isinstance(m, nn.Dropout) for m in vars(small).values())
    # each convolution and fc layer: weights, bias, and batch norm's scale and shift
    convs_and_fc = sum(a * b * 9 + b + 2 * b for a, b in zip(c[:-1], c[1:])) + 256 * 512 * 49 + 512 * 512 + 6 * 512
    scores = (4 * 512 + 4) + (4 * 128 + 4) + (4 * 64 + 4)  # score_fr, score_pool4, score_pool3
    upsampling = 4 * 4 * (4 * 4 + 4 * 4 + 16 * 16)  # no bias
    assert sum(p.size for p in small.parameters()) == convs_and_fc + scores + upsampling
    classifier = VGG16(n_class=5, backbone="small")  # the ImageNet classifier of those widths: fc6 over pool5's 7x7
    assert classifier.conv1_1.weight.shape == (16, 3, 3, 3) and classifier.fc6.weight.shape == (512, 256 * 49)


def test_fresh_fcn_scores_are_zero_and_upsampling_is_bilinear():
    model = FCN16s(n_class=3, backbone="tiny").eval()
    for layer in (model.score_fr, model.score_pool4):
        assert not layer.weight.data.any() and not layer.bias.data.any()
    np.testing.assert_array_equal(model.upscore16.weight.data, nn.bilinear_upsampling_weight(3, 32))
    x = mf.Tensor(np.random.default_rng(0).standard_normal((1, 3, 20, 20)).astype(np.float32))
    assert not model(x).data.any()


def test_learnable_upsampling_on_request():
    model = FCN32s(n_class=2, backbone="tiny", learnable_upsampling=True)
    assert model.upscore.weight.requires_grad and model.upscore.weight.lr_mult == 1.0


def _reference_forward(model, x):
    """FCN-32s/16s/8s written out directly, with the reference's crops typed in (19; 5, 27; 5, 9, 31)."""

    def trunk(h, names):
        for name in names:
            h = getattr(model, name)(h)
        return h

    pool3 = trunk(x, model.trunk_to("pool3"))
    pool4 = trunk(pool3, model.trunk_to("pool4")[len(model.trunk_to("pool3")) :])
    fc7 = trunk(pool4, model.trunk_names[len(model.trunk_to("pool4")) :])
    score_fr = model.score_fr(fc7)
    H, W = x.shape[2:]
    if isinstance(model, FCN32s):
        return F.crop(model.upscore(score_fr), (H, W), 19)
    up2 = model.upscore2(score_fr)
    scale4, scale3 = (0.01, 0.0001) if isinstance(model, FCN8sAtOnce) else (1.0, 1.0)
    fuse4 = up2 + F.crop(model.score_pool4(pool4 * scale4), up2.shape[2:], 5)
    if isinstance(model, FCN16s):
        return F.crop(model.upscore16(fuse4), (H, W), 27)
    up4 = model.upscore_pool4(fuse4)
    fuse3 = up4 + F.crop(model.score_pool3(pool3 * scale3), up4.shape[2:], 9)
    return F.crop(model.upscore8(fuse3), (H, W), 31)


@pytest.mark.parametrize("cls", FCNS)
def test_forward_matches_the_reference_wiring(cls, rng):
    model = cls(n_class=3, backbone="tiny", dtype=np.float64).eval()
    randomise(model, rng)
    x = mf.Tensor(rng.standard_normal((2, 3, 23, 40)))
    with mf.no_grad():
        np.testing.assert_allclose(model(x).data, _reference_forward(model, x).data, rtol=1e-12, atol=1e-14)


def test_at_once_scaling_divides_the_skip_scores():
    rng = np.random.default_rng(5)
    staged, at_once = (
        FCN8s(n_class=2, backbone="tiny", dtype=np.float64),
        FCN8sAtOnce(n_class=2, backbone="tiny", dtype=np.float64),
    )
    randomise(staged, rng)
    at_once.load_state_dict(staged.state_dict())
    at_once.score_pool4.weight.data = staged.score_pool4.weight.data / 0.01
    at_once.score_pool3.weight.data = staged.score_pool3.weight.data / 0.0001
    x = mf.Tensor(rng.standard_normal((1, 3, 30, 30)))
    with mf.no_grad():
        np.testing.assert_allclose(at_once.eval()(x).data, staged.eval()(x).data, rtol=1e-9)


@pytest.mark.parametrize("cls", FCNS)
def test_end_to_end_gradcheck_of_tiny_fcns(cls, rng):
    """The input and every parameter tensor, through the whole net and the loss (float64, eval mode).

    FCN8sAtOnce's skips pass through its fixed scales (0.01, 0.0001) both ways: a scale missing from the
    backward pass would make score_pool4's and score_pool3's gradients 100 and 10000 times too large."""
    model = cls(n_class=3, backbone="tiny", dtype=np.float64, learnable_upsampling=True).eval()
    randomise(model, rng)
    x = mf.Tensor(rng.standard_normal((1, 3, 11, 14)), requires_grad=True)
    labels = rng.integers(0, 3, size=(1, 11, 14))
    labels[0, :2] = 255

    def loss(x, *params):
        return F.softmax_cross_entropy(model(x), labels)

    params = list(model.parameters())
    gradcheck(loss, [x] + params, max_elements=1, n_directions=2, atol=1e-7, rtol=1e-4)


def test_state_dict_round_trip_gives_identical_scores(tmp_path, rng):
    a = FCN8s(n_class=3, backbone="tiny").eval()
    randomise(a, rng)
    for p in a.parameters():
        p.data = p.data.astype(np.float32)
    mf.save(tmp_path / "fcn8s.npz", a.state_dict())
    b = FCN8s(n_class=3, backbone="tiny").eval()
    x = mf.Tensor(rng.standard_normal((1, 3, 40, 29)).astype(np.float32))
    assert not np.array_equal(a(x).data, b(x).data)
    b.load_state_dict(mf.load(tmp_path / "fcn8s.npz"))
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_state_of_another_stage_fails_naming_the_keys():
    with pytest.raises(ValueError) as e:
        FCN8s(n_class=3, backbone="tiny").load_state_dict(FCN16s(n_class=3, backbone="tiny").state_dict())
    message = str(e.value)
    assert (
        "missing keys: ['upscore_pool4.weight', 'score_pool3.weight', 'score_pool3.bias', 'upscore8.weight']" in message
    )
    assert "unexpected keys: ['upscore16.weight']" in message
    with pytest.raises(ValueError, match=r"score_fr.weight: checkpoint \(5, 256, 1, 1\), model \(3, 256, 1, 1\)"):
        FCN32s(n_class=3, backbone="tiny").load_state_dict(FCN32s(n_class=5, backbone="tiny").state_dict())


def test_bad_arguments_are_named():
    with pytest.raises(
        ValueError, match=r"FCN8s: backbone 'alexnet' is not available.*AlexNet and GoogLeNet have only FCN32s"
    ):
        FCN8s(backbone="alexnet")
    with pytest.raises(
        ValueError,
        match=r"FCN32s: backbone 'resnet' is not available; choose one of 'vgg16', 'tiny', 'tiny-bn', 'small-bn', "
        r"'alexnet'",
    ):
        FCN32s(backbone="resnet")
    with pytest.raises(ValueError, match="n_class must be a positive integer, got 0"):
        FCN16s(n_class=0, backbone="tiny")
    with pytest.raises(ValueError, match=r"layer conv1_1 = Conv2d\(3, 4"):
        FCN32s(backbone="tiny")(mf.Tensor(np.zeros((1, 4, 8, 8), np.float32)))


def test_classifiers_take_their_imagenet_size_only(rng):
    model = VGG16(n_class=5, backbone="tiny").eval()
    assert model(mf.Tensor(rng.standard_normal((2, 3, 224, 224)).astype(np.float32))).shape == (2, 5)
    assert model.fc6.weight.shape == (256, 128 * 7 * 7)
    with pytest.raises(
        ValueError,
        match=r"VGG16 classifies 224x224 images: its fc6 takes a 7x7 pool5 map, but a 300x224 input gives 9x7",
    ):
        model(mf.Tensor(np.zeros((1, 3, 300, 224), np.float32)))
    alexnet = AlexNet(n_class=7).eval()
    assert alexnet(mf.Tensor(rng.standard_normal((1, 3, 224, 224)).astype(np.float32))).shape == (1, 7)
    assert alexnet.fc6.weight.shape == (4096, 256 * 6 * 6) and alexnet.conv1.stride == (4, 4)


def test_dropout_is_active_in_training_only(rng):
    model = FCN32s(n_class=2, backbone="tiny", dtype=np.float64)
    randomise(model, rng)
    x = mf.Tensor(rng.standard_normal((1, 3, 16, 16)))
    mf.manual_seed(0)
    a = model.train()(x).data
    mf.manual_seed(1)
    b = model(x).data
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model.eval()(x).data, model(x).data)


def test_classifier_input_and_backbone_errors():
    with pytest.raises(ValueError, match=r"VGG16: input must be \(N, 3, H, W\), got shape \(3, 224, 224\)"):
        VGG16(backbone="tiny")(mf.Tensor(np.zeros((3, 224, 224), np.float32)))
    with pytest.raises(ValueError, match="unknown VGG16 backbone 'resnet'; choose 'vgg16', 'tiny' or 'small'"):
        VGG16(backbone="resnet")


def test_check_fcn_names_what_cannot_be_built():
    from minifcn.models import build_fcn, check_fcn

    with pytest.raises(ValueError, match="unknown --model 'fcn4s'; choose one of fcn32s, fcn16s, fcn8s, fcn8s-atonce"):
        build_fcn("fcn4s", 2, "tiny")
    with pytest.raises(ValueError, match="unknown --fusion 'hha'"):
        check_fcn("fcn32s", "tiny", "hha")
    with pytest.raises(ValueError, match="--backbone alexnet exists for --model fcn32s only"):
        check_fcn("fcn8s", "alexnet")
    with pytest.raises(ValueError, match="--fusion late joins two FCN-32s streams"):
        check_fcn("fcn8s", "tiny", "late")
    check_fcn("fcn32s", "alexnet", "late")  # buildable: no error
