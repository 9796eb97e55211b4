"""RGB-D fusion (Sec. 5, NYUDv2): early fusion grows conv1's input, late fusion sums two streams' scores."""

import numpy as np
import pytest
from helpers import randomise

import minifcn as mf
import minifcn.functional as F
from minifcn import surgery
from minifcn.gradcheck import gradcheck
from minifcn.models import FCN8s, FCN32s
from minifcn.models.fusion import LateFusionFCN32s


def test_narrow_forward_and_gradcheck(rng):
    x = rng.standard_normal((2, 5, 3, 4))
    np.testing.assert_array_equal(F.narrow(x, 1, 3, 2).data, x[:, 3:5])
    np.testing.assert_array_equal(F.narrow(x, -1, 1, 2).data, x[..., 1:3])
    gradcheck(lambda t: F.narrow(t, 1, 1, 3), [mf.Tensor(x, requires_grad=True)])
    with pytest.raises(ValueError, match=r"narrow: \[4, 6\) is not inside axis 1 of shape \(2, 5, 3, 4\)"):
        F.narrow(x, 1, 4, 2)


def test_early_fusion_starts_as_the_rgb_net(rng):
    rgb_net = FCN8s(n_class=3, backbone="tiny", dtype=np.float64).eval()
    randomise(rgb_net, rng)
    rgb_filters = rgb_net.conv1_1.weight.data.copy()  # (4, 3, 3, 3), kept aside before any surgery
    fused = FCN8s(n_class=3, backbone="tiny", dtype=np.float64).eval()
    fused.load_state_dict(rgb_net.state_dict())
    surgery.add_input_channels(fused, 1)  # the surgery alone makes the fused net: nothing overwritten after it
    assert fused.conv1_1.weight.shape == (4, 4, 3, 3) and fused.conv1_1.in_channels == 4
    np.testing.assert_array_equal(fused.conv1_1.weight.data[:, :3], rgb_filters)  # the RGB filters, untouched
    image = rng.standard_normal((1, 3, 20, 22))
    with mf.no_grad():
        no_depth = fused(mf.Tensor(np.concatenate([image, np.zeros((1, 1, 20, 22))], axis=1))).data
        np.testing.assert_allclose(no_depth, rgb_net(mf.Tensor(image)).data, rtol=1e-12, atol=1e-12)
        # a depth channel acts like the grey-level image through the mean filter at first: a direct loop
        depth = rng.standard_normal((20, 22))
        first = fused.conv1_1(mf.Tensor(np.concatenate([image, depth[None, None]], axis=1))).data
        grey_filter = rgb_filters.mean(axis=1)  # (4, 3, 3)
        padded = np.pad(depth, 100)
        through_depth = np.zeros_like(first)
        for i in range(3):
            for j in range(3):
                through_depth[0] += grey_filter[:, i, j, None, None] * padded[None, i : i + 218, j : j + 220]
        np.testing.assert_allclose(
            first, rgb_net.conv1_1(mf.Tensor(image)).data + through_depth, rtol=1e-10, atol=1e-12
        )


def test_add_input_channels_keeps_the_multipliers_and_checks_its_argument():
    net = FCN32s(n_class=2, backbone="tiny")
    rgb_filters = net.conv1_1.weight.data.copy()
    surgery.add_input_channels(net, 2)
    grown = net.conv1_1.weight.data
    assert grown.shape == (4, 5, 3, 3) and net.conv1_1.weight.lr_mult == 1.0
    np.testing.assert_array_equal(grown[:, :3], rgb_filters)
    for c in (3, 4):  # each new channel: the mean of the RGB filters as they were
        np.testing.assert_allclose(grown[:, c], rgb_filters.mean(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="extra must be a positive integer"):
        surgery.add_input_channels(net, 0)


def test_late_fusion_is_the_sum_of_the_streams_at_first(rng):
    rgb_net, depth_net = (FCN32s(n_class=3, backbone="tiny", dtype=np.float64).eval() for _ in range(2))
    randomise(rgb_net, rng)
    randomise(depth_net, rng)
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


@pytest.mark.slow
def test_late_fusion_gradcheck(rng):
    rgb_net, depth_net = (FCN32s(n_class=2, backbone="tiny", dtype=np.float64).eval() for _ in range(2))
    fused = LateFusionFCN32s(rgb_net, depth_net).eval()
    randomise(fused, rng)
    x = mf.Tensor(rng.standard_normal((1, 4, 9, 11)), requires_grad=True)
    labels = rng.integers(0, 2, (1, 9, 11))
    gradcheck(
        lambda x, *p: F.softmax_cross_entropy(fused(x), labels),
        [x] + list(fused.parameters()),
        max_elements=1,
        n_directions=2,
        atol=1e-7,
        rtol=1e-4,
    )


def test_late_fusion_errors():
    with pytest.raises(ValueError, match=r"the streams differ: rgb has 3 classes on 'tiny', depth 2 on 'tiny'"):
        LateFusionFCN32s(FCN32s(3, "tiny"), FCN32s(2, "tiny"))
    with pytest.raises(TypeError, match="the depth stream must be an FCN32s, got FCN8s"):
        LateFusionFCN32s(FCN32s(3, "tiny"), FCN8s(3, "tiny"))
    with pytest.raises(ValueError, match=r"input must be \(N, 4, H, W\), RGB then depth; got shape \(1, 3, 8, 8\)"):
        LateFusionFCN32s(FCN32s(3, "tiny"), FCN32s(3, "tiny"))(mf.Tensor(np.zeros((1, 3, 8, 8), np.float32)))


# ---------------------------------------------------------------------------
# RGB-D data


from scipy.ndimage import binary_dilation  # noqa: E402
from scipy.ndimage import label as components  # noqa: E402

from minifcn import cli, evaluate, inference, predict, train  # noqa: E402
from minifcn.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from minifcn.data import Augment, DataError, RGBDFolder, RGBDShapes  # noqa: E402
from minifcn.data.rgbd import depth_to_channel  # noqa: E402
from minifcn.data.transforms import pad_to, rescale  # noqa: E402
from minifcn.preprocessing import CAFFE, CAFFE_RGBD, TORCHVISION_RGBD, with_depth  # noqa: E402


def test_rgbd_shapes_depth_reveals_what_colour_hides():
    data = RGBDShapes("train", 64)
    image, label = data[5]
    assert image.shape == (64, 64, 4) and image.dtype == np.uint8 and label.shape == (64, 64)
    assert np.array_equal(data[5][0], image)  # deterministic
    contrasts = []
    for i in range(30):
        image, label = data[i]
        if (label > 0).any():  # every shape is nearer than any background pixel
            assert image[label > 0, 3].max() < image[label == 0, 3].min()
        pieces, n = components(label > 0)
        for k in range(1, n + 1):
            inside = pieces == k
            ring = binary_dilation(inside, iterations=3) & ~binary_dilation(inside) & (label == 0)
            if ring.sum() >= 5:
                contrasts.append(np.abs(image[inside, :3].mean(0) - image[ring, :3].astype(float).mean(0)).sum())
    contrasts = np.array(contrasts)
    hidden, painted = (contrasts < 100).mean(), (contrasts > 140).mean()
    assert 0.3 < hidden < 0.7 and hidden + painted == 1.0  # two kinds: camouflaged, or painted to stand out


def test_rgbd_transforms_move_depth_with_the_image(rng):
    image = rng.integers(0, 256, (10, 12, 4)).astype(np.uint8)
    label = rng.integers(0, 3, (10, 12))
    padded, padded_label = pad_to(image, label, (14, 15))
    assert (
        padded.shape == (14, 15, 4) and (padded[10:, :, 3] == 0).all() and (padded[10:, :, :3] == (123, 117, 104)).all()
    )
    assert (padded_label[10:] == 255).all()
    from PIL import Image

    scaled, scaled_label = rescale(image, label, 1.5)
    expected_depth = np.asarray(Image.fromarray(image[:, :, 3]).resize((18, 15), Image.BILINEAR))
    assert scaled.shape == (15, 18, 4) and np.array_equal(scaled[:, :, 3], expected_depth)
    assert np.array_equal(
        scaled[:, :, :3], np.asarray(Image.fromarray(image[:, :, :3]).resize((18, 15), Image.BILINEAR))
    )
    out, out_label = Augment(flip=True, scale=(0.5, 2.0), crop_size=(9, 9))(image, label, np.random.default_rng(3))
    assert out.shape == (9, 9, 4) and out_label.shape == (9, 9)


def test_rgbd_preprocessing():
    image = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8) * 10
    x = TORCHVISION_RGBD(image)
    assert x.shape == (4, 2, 3)
    np.testing.assert_allclose(x[3], (image[:, :, 3].astype(np.float32) - 128) / 64, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(TORCHVISION_RGBD.invert(x), image[:, :, :3])
    y = CAFFE_RGBD(image)
    np.testing.assert_allclose(y[:3], CAFFE(image[:, :, :3]), rtol=1e-6)  # colour exactly as the RGB version
    np.testing.assert_allclose(y[3], x[3], rtol=1e-5)
    assert with_depth(CAFFE) is CAFFE_RGBD and with_depth(CAFFE_RGBD) is CAFFE_RGBD
    with pytest.raises(ValueError, match=r"expected an \(H, W, 4\) RGB-D image, got shape \(2, 3, 3\)"):
        TORCHVISION_RGBD(image[:, :, :3])


def _write_rgbd_folder(root, depth_mode="I;16"):
    from PIL import Image

    for sub in ("images", "depth", "labels"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)).save(root / "images" / f"{stem}.png")
        depth = rng.integers(0, 12000, (6, 8)).astype(np.uint16)
        if depth_mode == "I;16":
            Image.fromarray(depth).save(root / "depth" / f"{stem}.png")
        else:
            Image.fromarray(rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)).save(root / "depth" / f"{stem}.png")
        Image.fromarray(rng.integers(0, 3, (6, 8)).astype(np.uint8)).save(root / "labels" / f"{stem}.png")
    return root


def test_rgbd_folder_reads_millimetres(tmp_path):
    from PIL import Image

    root = _write_rgbd_folder(tmp_path / "rgbd")
    data = RGBDFolder(str(root / "images"), str(root / "depth"), str(root / "labels"), 3)
    image, label = data[1]
    depth_mm = np.asarray(Image.open(root / "depth" / "b.png")).astype(np.int64)
    assert image.shape == (6, 8, 4) and np.array_equal(image[:, :, 3], depth_to_channel(depth_mm))
    assert depth_to_channel(np.array([0, 5000, 10000, 20000])).tolist() == [0, 128, 255, 255]
    (root / "depth" / "a.png").unlink()
    with pytest.raises(DataError, match=r"image '.*a.png' has no depth '.*depth/a.png'"):
        RGBDFolder(str(root / "images"), str(root / "depth"), str(root / "labels"), 3)


def test_rgbd_folder_refuses_a_colour_depth_image(tmp_path):
    root = _write_rgbd_folder(tmp_path / "rgbd", depth_mode="RGB")
    data = RGBDFolder(str(root / "images"), str(root / "depth"), str(root / "labels"), 3)
    with pytest.raises(DataError, match=r"depth '.*a.png' is a RGB image; depth must be a grey PNG of millimetres"):
        data[0]


# ---------------------------------------------------------------------------
# The command lines


SMALL = [
    "--pad",  # images this small need the paper's padding
    "100",
    "--dataset",
    "rgbd-shapes",
    "--image-size",
    "32",
    "--batch-size",
    "2",
    "--iters",
    "4",
    "--eval-every",
    "2",
    "--checkpoint-every",
    "2",
    "--eval-limit",
    "4",
    "--samples",
    "1",
]


@pytest.mark.parametrize("fusion, extra", [("early", []), ("late", ["--model", "fcn32s"])])
def test_train_on_rgbd_shapes(fusion, extra, tmp_path, capsys):
    out = tmp_path / fusion
    assert cli.run(train.main, SMALL + ["--fusion", fusion, "--out", str(out)] + extra) == 0
    assert f"{fusion} fusion of depth" in capsys.readouterr().out
    last = load_checkpoint(str(out / "last.npz"))
    assert last.meta["fusion"] == fusion and last.meta["preprocessing"] == "torchvision-rgbd"
    model = model_from_checkpoint(last)
    if fusion == "early":
        assert last.model["conv1_1.weight"].shape[1] == 4
    else:
        assert "depth.conv1_1.weight" in last.model and "rgb.score_fr.weight" in last.model
    image, label = RGBDShapes("val", 32)[0]
    assert inference.predict(model, image, TORCHVISION_RGBD).shape == label.shape
    code = cli.run(
        evaluate.main,
        [
            "--checkpoint",
            str(out / "last.npz"),
            "--dataset",
            "rgbd-shapes",
            "--image-size",
            "32",
            "--limit",
            "4",
            "--out",
            str(tmp_path / "eval"),
        ],
    )
    assert code == 0
    import json

    assert json.load(open(tmp_path / "eval" / "metrics.json"))["mean_iu"] == pytest.approx(
        json.load(open(out / "metrics.json"))["mean_iu"], rel=1e-6
    )
    code = cli.run(predict.main, ["--checkpoint", str(out / "last.npz"), "x.png"])
    assert code == 1 and "is an RGB-D net" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fusion", "early"], "--fusion is for RGB-D datasets (rgbd-shapes, rgbd-folder), not shapes"),
        (SMALL + ["--fusion", "late", "--model", "fcn8s"], "--fusion late joins two FCN-32s streams"),
        (
            SMALL + ["--fusion", "late", "--model", "fcn32s", "--init", "x.npz"],
            "--fusion late starts both streams from trained",
        ),
        (SMALL + ["--init-depth", "x.npz"], "--init-depth is for --fusion late"),
    ],
)
def test_fusion_flag_errors(args, message, capsys):
    assert cli.run(train.main, args) == 1
    assert message in capsys.readouterr().err


def test_resume_refuses_another_fusion(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.run(train.main, SMALL + ["--model", "fcn32s", "--out", str(out)]) == 0
    args = SMALL + [
        "--iters",
        "6",
        "--fusion",
        "late",
        "--model",
        "fcn32s",
        "--resume",
        str(out / "last.npz"),
        "--out",
        str(out),
    ]
    assert cli.run(train.main, args) == 1
    assert "was trained with --fusion early, this run asks for late" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Two heads on one trunk (Sec. 5, SIFT Flow)

from minifcn.models import FCN16s, MultiHeadFCN  # noqa: E402


def test_each_head_is_an_fcn_on_the_shared_trunk(rng):
    net = MultiHeadFCN("fcn16s", {"semantic": 4, "geometric": 3}, "tiny", dtype=np.float64).eval()
    randomise(net, rng)
    x = rng.standard_normal((2, 3, 21, 18))
    with mf.no_grad():
        out = net(mf.Tensor(x))
        for head, n in (("semantic", 4), ("geometric", 3)):
            alone = FCN16s(n, "tiny", dtype=np.float64).eval()
            state = {
                k: v for k, v in net.state_dict().items() if "." in k and not k.startswith(("semantic.", "geometric."))
            }
            state.update({k.split(".", 1)[1]: v for k, v in net.state_dict().items() if k.startswith(head + ".")})
            alone.load_state_dict(state)
            np.testing.assert_allclose(out[head].data, alone(mf.Tensor(x)).data, rtol=1e-12, atol=1e-12)
    assert out["geometric"].shape == (2, 3, 21, 18)
    assert sum(1 for k in net.state_dict() if k.startswith("conv1_1")) == 2  # one trunk: weight and bias, once


def test_two_losses_train_one_trunk(rng):
    net = MultiHeadFCN("fcn32s", {"a": 3, "b": 2}, "tiny", dtype=np.float64).eval()
    randomise(net, rng)
    x = rng.standard_normal((1, 3, 10, 13))
    la, lb = rng.integers(0, 3, (1, 10, 13)), rng.integers(0, 2, (1, 10, 13))

    def grads(which):
        for p in net.parameters():
            p.grad = None
        out = net(mf.Tensor(x))
        losses = {"a": F.softmax_cross_entropy(out["a"], la), "b": F.softmax_cross_entropy(out["b"], lb)}
        (losses["a"] + losses["b"] if which == "both" else losses[which]).backward()
        return net.conv1_1.weight.grad.copy(), net.a.score_fr.weight.grad, net.b.score_fr.weight.grad

    both, only_a, only_b = grads("both"), grads("a"), grads("b")
    np.testing.assert_allclose(both[0], only_a[0] + only_b[0], rtol=1e-10, atol=1e-14)  # the trunk hears both tasks
    assert only_a[2] is None and only_b[1] is None  # each head hears only its own loss
    gradcheck(
        lambda x, *p: F.add(*[F.softmax_cross_entropy(s, lab) for s, lab in zip(net(x).values(), (la, lb))]),
        [mf.Tensor(x, requires_grad=True)] + list(net.parameters()),
        max_elements=1,
        n_directions=2,
        atol=1e-7,
        rtol=1e-4,
    )


def test_multihead_names_must_not_clash():
    with pytest.raises(ValueError, match=r"head name 'conv1_1' must be an identifier that names no trunk layer"):
        MultiHeadFCN("fcn32s", {"conv1_1": 2}, "tiny")


from minifcn.data import SIFTFlow, TwoLabelShapes  # noqa: E402


def test_two_label_shapes():
    data = TwoLabelShapes("val", 48)
    image, labels = data[4]
    assert labels.shape == (48, 48, 2) and np.array_equal(data[4][1], labels)
    for i in range(10):
        image, labels = data[i]
        shape, colour = labels[..., 0], labels[..., 1]
        assert np.array_equal(shape > 0, colour > 0) and set(np.unique(colour)) <= {0, 1, 2}
        pieces, n = components(shape > 0)
        for k in range(1, n + 1):
            inside = pieces == k
            red, _, blue = image[inside].astype(float).mean(axis=0)
            assert len(np.unique(colour[inside])) == 1
            assert colour[inside][0] == (1 if red > blue else 2)
    assert data.heads == {"shape": 6, "colour": 3}


def _write_siftflow(root, names=("coast_1", "street_2"), S=8):
    from PIL import Image
    from scipy.io import savemat

    sub = "spatial_envelope_256x256_static_8outdoorcategories"
    for folder in ("Images", "SemanticLabels", "GeoLabels"):
        (root / folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (S, S, 3)).astype(np.uint8)).save(root / "Images" / sub / f"{name}.jpg")
        savemat(root / "SemanticLabels" / sub / f"{name}.mat", {"S": rng.integers(0, 34, (S, S))})
        savemat(root / "GeoLabels" / sub / f"{name}.mat", {"S": rng.integers(-1, 4, (S, S))})
    (root / "trainval.txt").write_text("\n".join(names) + "\n")
    return root, sub


def test_siftflow_reads_both_labels(tmp_path):
    from scipy.io import loadmat

    root, sub = _write_siftflow(tmp_path / "siftflow")
    data = SIFTFlow(str(root), "trainval")
    image, labels = data[1]
    raw_sem = loadmat(root / "SemanticLabels" / sub / "street_2.mat")["S"]
    raw_geo = loadmat(root / "GeoLabels" / sub / "street_2.mat")["S"]
    assert image.shape == (8, 8, 3) and labels.shape == (8, 8, 2)
    np.testing.assert_array_equal(labels[..., 0], np.where(raw_sem >= 1, raw_sem - 1, 255))
    np.testing.assert_array_equal(labels[..., 1], np.where(raw_geo >= 1, raw_geo - 1, 255))
    assert data.heads == {"semantic": 33, "geometric": 3} and len(data) == 2


def test_siftflow_errors_name_the_file(tmp_path):
    root, sub = _write_siftflow(tmp_path / "siftflow")
    (root / "GeoLabels" / sub / "coast_1.mat").unlink()
    with pytest.raises(
        DataError, match=r"SIFT Flow: '.*GeoLabels/.*coast_1.mat' is missing \(listed in trainval.txt\)"
    ):
        SIFTFlow(str(root), "trainval")
    with pytest.raises(DataError, match=r"SIFT Flow split 'test': split list '.*test.txt' does not exist"):
        SIFTFlow(str(root), "test")


def test_late_fusion_from_two_trained_streams(tmp_path, capsys):
    base = SMALL + ["--model", "fcn32s"]
    assert cli.run(train.main, base + ["--fusion", "rgb", "--out", str(tmp_path / "rgb")]) == 0
    assert cli.run(train.main, base + ["--fusion", "depth", "--seed", "1", "--out", str(tmp_path / "depth")]) == 0
    rgb, depth = (
        load_checkpoint(str(tmp_path / "rgb" / "last.npz")),
        load_checkpoint(str(tmp_path / "depth" / "last.npz")),
    )
    assert "rgb.conv1_1.weight" in rgb.model and rgb.model["rgb.conv1_1.weight"].shape[1] == 3
    assert "depth.upscore.weight" in depth.model  # a stream trained alone upsamples its own scores
    args = base + [
        "--fusion",
        "late",
        "--iters",
        "1",
        "--lr",
        "1e-9",
        "--init",
        str(tmp_path / "rgb" / "last.npz"),
        "--init-depth",
        str(tmp_path / "depth" / "last.npz"),
        "--out",
        str(tmp_path / "late"),
    ]
    assert cli.run(train.main, args) == 0
    assert "the depth stream from" in capsys.readouterr().out
    late = load_checkpoint(str(tmp_path / "late" / "last.npz"))
    for source in (rgb, depth):
        for name, array in source.model.items():
            if name in late.model and "running_" not in name:  # batch norm's statistics move in any training step
                np.testing.assert_allclose(late.model[name], array, atol=1e-6, err_msg=name)  # one step at lr 1e-9
    assert not np.allclose(late.model["rgb.conv1_1.weight"], late.model["depth.conv1_1.weight"])
    # the wrong checkpoint for a stream is refused by name
    args[args.index("--init-depth") + 1] = str(tmp_path / "rgb" / "last.npz")
    assert cli.run(train.main, args) == 1
    assert "was not trained with --fusion depth" in capsys.readouterr().err


def test_a_stream_reads_its_channels(rng):
    from minifcn.models import StreamFCN

    net = FCN32s(3, "tiny", dtype=np.float64).eval()
    randomise(net, rng)
    x = rng.standard_normal((1, 4, 12, 14))
    with mf.no_grad():
        rgb = StreamFCN(net, "rgb")(mf.Tensor(x)).data
        np.testing.assert_allclose(rgb, net(mf.Tensor(x[:, :3])).data, rtol=1e-12)
        depth = StreamFCN(net, "depth")(mf.Tensor(x)).data
        np.testing.assert_allclose(depth, net(mf.Tensor(np.repeat(x[:, 3:], 3, axis=1))).data, rtol=1e-12)


def test_early_fusion_gradcheck(rng):
    net = surgery.add_input_channels(FCN8s(n_class=2, backbone="tiny", dtype=np.float64), 1).eval()
    randomise(net, rng)
    x = mf.Tensor(rng.standard_normal((1, 4, 9, 10)), requires_grad=True)
    labels = rng.integers(0, 2, (1, 9, 10))
    gradcheck(
        lambda x, *p: F.softmax_cross_entropy(net(x), labels),
        [x] + list(net.parameters()),
        max_elements=1,
        n_directions=2,
        atol=1e-7,
        rtol=1e-4,
    )


# ---------------------------------------------------------------------------
# The remaining errors of the RGB-D and multi-task code, each triggered once


def test_fusion_and_heads_model_errors():
    from minifcn import nn
    from minifcn.models import StreamFCN

    with pytest.raises(TypeError, match="Sequential has no convolution to grow"):
        surgery.add_input_channels(nn.Sequential({"relu": nn.ReLU()}), 1)
    with pytest.raises(ValueError, match="stream must be 'rgb' or 'depth', got 'hha'"):
        StreamFCN(FCN32s(2, "tiny"), "hha")
    with pytest.raises(ValueError, match=r"StreamFCN: input must be \(N, 4, H, W\)"):
        StreamFCN(FCN32s(2, "tiny"), "rgb")(mf.Tensor(np.zeros((1, 3, 8, 8), np.float32)))
    with pytest.raises(ValueError, match="MultiHeadFCN: unknown model 'fcn4s'"):
        MultiHeadFCN("fcn4s", {"a": 2}, "tiny")
    with pytest.raises(ValueError, match="MultiHeadFCN: needs at least one head"):
        MultiHeadFCN("fcn32s", {}, "tiny")


def test_evaluate_refuses_an_unknown_head(rng):
    net = MultiHeadFCN("fcn32s", {"a": 2, "b": 3}, "tiny")
    with pytest.raises(ValueError, match="the net has heads a, b, not 'c'"):
        inference.evaluate(net, TwoLabelShapes("val", 32, length=1), TORCHVISION_RGBD, head="c")


def test_data_errors_of_rgbd_and_siftflow(tmp_path):
    from PIL import Image
    from scipy.io import savemat

    root = _write_rgbd_folder(tmp_path / "rgbd")
    Image.fromarray(np.zeros((5, 8), np.uint16)).save(root / "depth" / "b.png")
    data = RGBDFolder(str(root / "images"), str(root / "depth"), str(root / "labels"), 3)
    with pytest.raises(DataError, match=r"depth '.*b.png' is 8x5, its image '.*b.png' 8x6"):
        data[1]
    with pytest.raises(DataError, match=r"n_class must be an integer in \[1, 255\], got 0"):
        RGBDFolder(str(root / "images"), str(root / "depth"), str(root / "labels"), 0)

    sift, sub = _write_siftflow(tmp_path / "siftflow")
    savemat(sift / "SemanticLabels" / sub / "coast_1.mat", {"S": np.full((8, 8), 40)})
    with pytest.raises(DataError, match=r"coast_1.mat' has values outside 0..33: \[40\]"):
        SIFTFlow(str(sift))[0]
    savemat(sift / "SemanticLabels" / sub / "coast_1.mat", {"L": np.zeros((8, 8))})
    with pytest.raises(DataError, match=r"coast_1.mat' has no matrix 'S' \(it holds \['L'\]\)"):
        SIFTFlow(str(sift))[0]
    savemat(sift / "SemanticLabels" / sub / "coast_1.mat", {"S": np.ones((4, 8))})
    with pytest.raises(DataError, match=r"coast_1.mat' is 8x4, its image 8x8"):
        SIFTFlow(str(sift))[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "rgbd-shapes", "--data-root", "x"], "the rgbd-shapes dataset is generated, not read"),
        (["--dataset", "rgbd-folder", "--data-root", "x"], "--dataset rgbd-folder needs --n-class"),
        (
            ["--dataset", "two-label-shapes", "--init", "x.npz"],
            "--init and --fusion are not available with several heads",
        ),
    ],
)
def test_data_flag_errors(args, message, capsys):
    assert cli.run(train.main, args) == 1
    assert message in capsys.readouterr().err


def test_join_streams_checks_classes(tmp_path, capsys):
    base = SMALL + ["--model", "fcn32s"]
    assert cli.run(train.main, base + ["--fusion", "rgb", "--out", str(tmp_path / "rgb")]) == 0
    assert (
        cli.run(train.main, base + ["--fusion", "depth", "--backbone", "tiny", "--out", str(tmp_path / "depth")]) == 0
    )
    args = base + [
        "--fusion",
        "late",
        "--init",
        str(tmp_path / "rgb" / "last.npz"),
        "--init-depth",
        str(tmp_path / "depth" / "last.npz"),
        "--out",
        str(tmp_path / "late"),
    ]
    assert cli.run(train.main, args) == 1
    assert "has 6 classes on tiny; this run needs 6 on tiny-bn" in capsys.readouterr().err
