"""minifcn.surgery: convolutionalization (Sec. 3.1), transplants, staged initialisation (Sec. 4.2)."""

import numpy as np
import pytest
from helpers import run_trunk

import minifcn as mf
import minifcn.functional as F
import minifcn.nn as nn
from minifcn import surgery
from minifcn.models import VGG16, AlexNet, Classifier, FCN8s, FCN16s, FCN32s


def _he(model, rng, dtype=np.float32):
    """Random weights that keep activations O(1) through the whole net, and small random biases."""
    for name, p in model.named_parameters():
        fan_in = p.data[0].size if p.ndim > 1 else 1
        std = np.sqrt(2.0 / fan_in) if p.ndim > 1 else 0.1
        p.data = (rng.standard_normal(p.shape) * std).astype(dtype)


@pytest.fixture(scope="module")
def vgg16_pair():
    rng = np.random.default_rng(0)
    classifier = VGG16().eval()
    _he(classifier, rng)
    return classifier, surgery.convolutionalize(classifier).eval()


def test_convolutionalized_vgg16_gives_the_classifiers_logits_at_224(vgg16_pair):
    classifier, fcn = vgg16_pair
    assert fcn.fc6.weight.shape == (4096, 512, 7, 7) and fcn.fc8.weight.shape == (1000, 4096, 1, 1)
    x = mf.Tensor(np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32))
    with mf.no_grad():
        logits, scores = classifier(x).data, fcn(x).data
    assert scores.shape == (2, 1000, 1, 1)
    np.testing.assert_allclose(scores[:, :, 0, 0], logits, rtol=2e-4, atol=2e-4 * np.abs(logits).max())


def test_convolutionalized_vgg16_slides_the_fully_connected_head_over_pool5(vgg16_pair):
    """On a 288x256 image the score map is 3x2; entry (i, j) is fc6-fc8 applied to the 7x7 pool5 window at (i, j)."""
    classifier, fcn = vgg16_pair
    x = mf.Tensor(np.random.default_rng(2).standard_normal((1, 3, 288, 256)).astype(np.float32))
    names = list(classifier._modules)
    with mf.no_grad():
        scores = fcn(x).data
        pool5 = x
        for name in names[: names.index("pool5") + 1]:
            pool5 = getattr(fcn, name)(pool5)
        assert scores.shape == (1, 1000, 3, 2) and pool5.shape[2:] == (9, 8)
        for i in range(3):
            for j in range(2):
                h = mf.Tensor(np.ascontiguousarray(pool5.data[:, :, i : i + 7, j : j + 7]))
                for name in names[names.index("flatten") :]:
                    h = getattr(classifier, name)(h)
                np.testing.assert_allclose(scores[0, :, i, j], h.data[0], rtol=2e-4, atol=2e-4 * np.abs(h.data).max())


class Unpadded(Classifier):
    """A small classifier whose convolutions do not pad: two 2x2 poolings, so its stride is 4."""

    input_size, grid = 20, 3

    def __init__(self):
        super().__init__(
            {
                "conv1": nn.Conv2d(3, 4, 3, dtype=np.float64),
                "relu1": nn.ReLU(),
                "pool1": nn.MaxPool2d(2),
                "conv2": nn.Conv2d(4, 5, 3, dtype=np.float64),
                "relu2": nn.ReLU(),
                "pool2": nn.MaxPool2d(2),
                "flatten": nn.Flatten(),
                "fc6": nn.Linear(5 * 3 * 3, 6, dtype=np.float64),
                "relu6": nn.ReLU(),
                "fc7": nn.Linear(6, 2, dtype=np.float64),
            }
        )


def test_convolutionalized_net_equals_the_classifier_on_every_window_when_nothing_is_padded(rng):
    """Sec. 3.1 exactly: entry (i, j) of the score map is the classifier on the window at (4i, 4j)."""
    classifier = Unpadded()
    fcn = surgery.convolutionalize(classifier)
    x = rng.standard_normal((1, 3, 20 + 4 * 3, 20 + 4 * 5))
    scores = fcn(mf.Tensor(x)).data
    assert scores.shape == (1, 2, 4, 6)
    for i in range(4):
        for j in range(6):
            window = x[:, :, 4 * i : 4 * i + 20, 4 * j : 4 * j + 20]
            np.testing.assert_allclose(scores[0, :, i, j], classifier(mf.Tensor(window)).data[0], rtol=1e-12)


def test_convolutionalize_keeps_the_classifier_and_handles_alexnet(rng):
    alexnet = AlexNet(n_class=3).eval()
    before = alexnet.fc6.weight.data.copy()
    fcn = surgery.convolutionalize(alexnet).eval()
    assert fcn.fc6.weight.shape == (4096, 256, 6, 6) and alexnet.fc6.weight.shape == (4096, 9216)
    fcn.fc6.weight.data[...] = 0
    np.testing.assert_array_equal(alexnet.fc6.weight.data, before)
    assert fcn(mf.Tensor(np.zeros((1, 3, 256, 288), np.float32))).shape == (1, 3, 2, 3)


def test_transplant_from_an_imagenet_classifier_reshapes_fc_to_conv(rng):
    classifier = VGG16(n_class=1000, backbone="tiny")
    model = FCN32s(n_class=5, backbone="tiny")
    report = surgery.transplant(classifier.state_dict(), model)
    assert report.reshaped == ["fc6.weight", "fc7.weight"]
    assert report.not_in_model == ["fc8.weight", "fc8.bias"]
    assert report.not_in_state == ["score_fr.weight", "score_fr.bias", "upscore.weight"]
    np.testing.assert_array_equal(model.fc6.weight.data, classifier.fc6.weight.data.reshape(256, 128, 7, 7))
    np.testing.assert_array_equal(model.conv3_2.bias.data, classifier.conv3_2.bias.data)
    assert model.fc6.weight.data is not classifier.fc6.weight.data
    assert "2 reshaped" in str(report)


def test_transplant_refuses_arrays_of_another_size_and_copies_nothing():
    model = FCN32s(n_class=5, backbone="tiny")
    before = model.conv1_1.weight.data.copy()
    state = {
        "conv1_1.weight": np.ones((4, 3, 3, 3), np.float32),
        "score_fr.weight": np.zeros((21, 256, 1, 1), np.float32),
    }
    with pytest.raises(
        ValueError, match=r"sizes differ: score_fr.weight: state \(21, 256, 1, 1\), model \(5, 256, 1, 1\)"
    ):
        surgery.transplant(state, model)
    np.testing.assert_array_equal(model.conv1_1.weight.data, before)


def test_staged_initialisation_copies_the_coarser_net_and_its_new_skips_add_nothing(rng):
    """16s from 32s, then 8s from 16s (Sec. 4.2): the shared layers are copied, so the 1/32 scores are the
    coarser net's exactly, and the new skip scores start at zero, so they add nothing at first."""
    fcn32 = FCN32s(n_class=3, backbone="tiny", dtype=np.float64).eval()
    for p in fcn32.parameters():
        if p.lr_mult:  # leave the upsampling bilinear
            p.data = rng.standard_normal(p.shape) * 0.3
    fcn16 = FCN16s(n_class=3, backbone="tiny", dtype=np.float64).eval()
    report = surgery.stage(fcn32, fcn16)
    assert report.not_in_state == ["upscore2.weight", "score_pool4.weight", "score_pool4.bias", "upscore16.weight"]
    assert report.not_in_model == ["upscore.weight"]
    x = mf.Tensor(rng.standard_normal((1, 3, 50, 70)))

    def score_fr(model):
        return model.score_fr(run_trunk(model, x, "drop7")).data

    np.testing.assert_array_equal(score_fr(fcn16), score_fr(fcn32))
    # FCN-16s is then exactly the 1/32 scores upsampled 2x and 16x, with nothing from pool4.
    up16 = fcn16.upscore16(fcn16.upscore2(mf.Tensor(score_fr(fcn16)))).data
    np.testing.assert_array_equal(fcn16(x).data, up16[:, :, 27 : 27 + 50, 27 : 27 + 70])
    fcn8 = FCN8s(n_class=3, backbone="tiny", dtype=np.float64).eval()
    report = surgery.stage(fcn16, fcn8)
    assert report.not_in_state == ["upscore_pool4.weight", "score_pool3.weight", "score_pool3.bias", "upscore8.weight"]
    np.testing.assert_array_equal(score_fr(fcn8), score_fr(fcn32))
    # With zero skips, the whole FCN-8s is bilinear upsampling of the 1/32 scores: 2x, 2x, then 8x, and
    # the final crop of 31 (Sec. 4.2). Recomputed here with fresh bilinear kernels, not the net's layers.
    s32 = score_fr(fcn32)
    bilinear = {k: nn.bilinear_upsampling_weight(3, k, np.float64) for k in (4, 16)}
    up = F.conv_transpose2d(F.conv_transpose2d(s32, bilinear[4], stride=2), bilinear[4], stride=2)
    up = F.conv_transpose2d(up, bilinear[16], stride=8).data
    np.testing.assert_allclose(fcn8(x).data, up[:, :, 31 : 31 + 50, 31 : 31 + 70], rtol=1e-12, atol=1e-12)


def test_stage_checks_order_backbone_and_classes():
    with pytest.raises(ValueError, match="FCN32s is not a finer stage than FCN16s"):
        surgery.stage(FCN16s(n_class=3, backbone="tiny"), FCN32s(n_class=3, backbone="tiny"))
    with pytest.raises(ValueError, match="FCN32s has backbone 'tiny' and 3 classes, FCN16s has 'tiny' and 4"):
        surgery.stage(FCN32s(n_class=3, backbone="tiny"), FCN16s(n_class=4, backbone="tiny"))
    with pytest.raises(TypeError, match="expected FCN32s, FCN16s or FCN8s, got VGG16"):
        surgery.stage(VGG16(backbone="tiny"), FCN16s(backbone="tiny"))


def test_set_n_class_resets_scores_and_upsampling_and_keeps_the_trunk(rng):
    model = FCN8s(n_class=21, backbone="tiny")
    trunk = model.conv2_1.weight.data.copy()
    order = [name.split(".")[0] for name in model.state_dict()]
    surgery.set_n_class(model, 4)
    assert model.n_class == 4 and [name.split(".")[0] for name in model.state_dict()] == order
    assert model.score_fr.weight.shape == (4, 256, 1, 1) and model.score_pool3.weight.shape == (4, 32, 1, 1)
    assert not model.score_pool4.weight.data.any() and model.score_pool4.bias.lr_mult == 2.0
    np.testing.assert_array_equal(model.upscore8.weight.data, nn.bilinear_upsampling_weight(4, 16))
    assert model.upscore8.weight.lr_mult == 0 and model.upscore8.stride == (8, 8)
    np.testing.assert_array_equal(model.conv2_1.weight.data, trunk)
    assert model(mf.Tensor(rng.standard_normal((1, 3, 9, 9)).astype(np.float32))).shape == (1, 4, 9, 9)
    classifier = surgery.set_n_class(VGG16(backbone="tiny"), 10)
    assert classifier.fc8.weight.shape == (10, 256)
    with pytest.raises(ValueError, match="n_class must be a positive integer, got -1"):
        surgery.set_n_class(model, -1)


def test_surgery_errors_name_the_layer():
    broken = Unpadded()
    broken.fc6 = nn.Linear(44, 6, dtype=np.float64)
    with pytest.raises(ValueError, match=r"fc6 takes 44 features, but the grid before it is 5 x 3 x 3 = 45"):
        surgery.convolutionalize(broken)
    with pytest.raises(TypeError, match="expected an FCN or a classifier from minifcn.models, got Sequential"):
        surgery.set_n_class(nn.Sequential(nn.ReLU()), 3)


def test_surgery_makes_its_arrays_on_the_device_of_the_net(monkeypatch):
    """set_n_class and randomise_scores on a net that lives on the GPU leave every parameter there. A stand-in
    plays the GPU: its arrays are NumPy arrays of a class the backend takes for CuPy's."""
    from minifcn import backend
    from minifcn.surgery import randomise_scores

    class StandIn(np.ndarray):
        pass

    StandIn.__module__ = "cupy.standin"  # the backend recognises a CuPy array by its module

    class FakeCupy:
        class cuda:
            class runtime:
                getDeviceCount = staticmethod(lambda: 1)

        @staticmethod
        def asarray(a):
            return np.asarray(a).view(StandIn)

    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy)
    model = FCN8s(5, "tiny", False).to("cuda")
    surgery.set_n_class(model, 3)
    randomise_scores(model, 0)
    assert model.score_fr.weight.shape[0] == model.upscore8.weight.shape[0] == 3
    for name, p in model.named_parameters():
        assert type(p.data) is StandIn, name
    classifier = VGG16(n_class=10, backbone="tiny").to("cuda")
    surgery.set_n_class(classifier, 4)
    assert type(classifier.fc8.weight.data) is StandIn and classifier.fc8.weight.shape[0] == 4
