"""python -m minifcn.train, evaluate and predict, end to end on tiny runs (tiny backbone, small Shapes)."""

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from minifcn import cli, evaluate, inference, loop, nn, predict, serialization, start, train
from minifcn.checkpoint import load_checkpoint, model_from_checkpoint
from minifcn.data import Shapes
from minifcn.metrics import confusion_matrix, segmentation_scores
from minifcn.preprocessing import TORCHVISION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--image-size", "32", "--pad", "100", "--batch-size", "2", "--eval-limit", "4", "--samples", "2"]


def run_cli(main, args, capsys):
    code = cli.run(main, args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 4-iteration run, evaluated at 2 and 4, shared by the artefact, evaluate and predict tests."""
    out = str(tmp_path_factory.mktemp("run"))
    code = cli.run(train.main, SMALL + ["--iters", "4", "--eval-every", "2", "--checkpoint-every", "2", "--out", out])
    assert code == 0
    return out


def test_train_writes_every_artefact(trained):
    out = trained
    config = json.load(open(os.path.join(out, "config.json")))
    assert (
        config["model"] == "fcn8s"
        and config["backbone"] == "tiny-bn"
        and config["optimizer"] == "adam"
        and config["iters"] == 4
    )
    rows = list(csv.DictReader(open(os.path.join(out, "log.csv"))))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["loss"]) > 0 and float(r["lr"]) > 0 for r in rows)
    assert [r["mean_iu"] != "" for r in rows] == [False, True, False, True]
    assert float(rows[3]["seconds"]) >= float(rows[0]["seconds"]) > 0
    curves = Image.open(os.path.join(out, "curves.png"))
    assert curves.size == (980, 600) and np.asarray(curves.convert("L")).min() < 100  # something was drawn
    samples = sorted(os.listdir(os.path.join(out, "samples")))
    assert samples == ["iter000002_0.png", "iter000002_1.png", "iter000004_0.png", "iter000004_1.png"]
    strip = np.asarray(Image.open(os.path.join(out, "samples", samples[-1])))
    # the panels' names (18 rows), the three panels enlarged 4x (32 -> 128), then the legend
    assert strip.shape[1:] == (3 * 128 + 8, 3) and strip.shape[0] > 18 + 128 + 18
    image = Shapes("val", 32)[1][0].repeat(4, axis=0).repeat(4, axis=1)
    assert np.array_equal(strip[18 : 18 + 128, :128], image)  # the strip starts with the val image itself

    last, best = load_checkpoint(os.path.join(out, "last.npz")), load_checkpoint(os.path.join(out, "best.npz"))
    assert last.meta["iteration"] == 4 and last.meta["preprocessing"] == "torchvision"
    assert best.meta["iteration"] in (2, 4)
    assert set(last.model) == set(model_from_checkpoint(last).state_dict())
    assert any(k.startswith("m.") for k in last.optim) and int(last.optim["t"]) == 4  # Adam's moments and step
    assert any(k.endswith("running_var") for k in last.model)  # batch norm's statistics

    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["iteration"] == 4 and set(metrics["iu"]) == set(Shapes.classes)
    assert metrics["mean_iu"] == pytest.approx(float(rows[3]["mean_iu"]), rel=1e-5)
    # The metrics are those of last.npz's weights on the first 4 val images, recomputed here.
    model = model_from_checkpoint(last)
    val = Shapes("val", 32)
    hist = sum(confusion_matrix(val[i][1], inference.predict(model, val[i][0], TORCHVISION), 6) for i in range(4))
    assert metrics["pixel_acc"] == pytest.approx(segmentation_scores(hist)["pixel_acc"])


def test_evaluate_round_trip(trained, tmp_path, capsys):
    args = ["--checkpoint", os.path.join(trained, "last.npz"), "--limit", "4", "--out", str(tmp_path)]
    code, out, err = run_cli(evaluate.main, args, capsys)
    assert code == 0, err
    assert "mean IU" in out and "ring" in out
    result = json.load(open(tmp_path / "metrics.json"))
    trained_metrics = json.load(open(os.path.join(trained, "metrics.json")))
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert result[key] == pytest.approx(trained_metrics[key])
    assert result["images"] == 4 and len(os.listdir(tmp_path / "predictions")) == 4
    pred = np.asarray(Image.open(tmp_path / "predictions" / "00000.png"))
    assert pred.shape == (32, 32) and pred.max() < 6


def test_predict_any_size(trained, tmp_path, capsys):
    image = Shapes("val", 48)[0][0][:37, :23]  # an odd, non-square size
    Image.fromarray(image).save(tmp_path / "odd.png")
    ckpt = os.path.join(trained, "best.npz")
    code, out, err = run_cli(
        predict.main, ["--checkpoint", ckpt, "--out", str(tmp_path / "p"), str(tmp_path / "odd.png")], capsys
    )
    assert code == 0, err
    label = Image.open(tmp_path / "p" / "odd.png")
    assert label.mode == "P" and label.size == (23, 37)
    expected = inference.predict(model_from_checkpoint(load_checkpoint(ckpt)), image, TORCHVISION)
    assert np.array_equal(np.asarray(label), expected)
    assert Image.open(tmp_path / "p" / "odd_overlay.png").size == (23, 37)


@pytest.mark.parametrize("backbone", ["tiny-bn", "tiny"])
def test_resume_after_ctrl_c_ends_with_the_same_weights(backbone, tmp_path, monkeypatch):
    """An interrupted and resumed run equals an uninterrupted one (Adam's moments, batch-norm statistics, data
    order, and with the tiny trunk dropout's masks, drawn from the generator whose state the checkpoint keeps)."""
    args = SMALL + ["--iters", "5", "--eval-every", "5", "--checkpoint-every", "5", "--lr", "0.02"]
    args += ["--backbone", backbone]
    assert cli.run(train.main, args + ["--out", str(tmp_path / "whole")]) == 0

    real_step = loop.Loop.step

    def step_then_ctrl_c(self, t, batch=None):
        loss = real_step(self, t, batch)
        if t == 1:  # Ctrl-C during iteration 2: it finishes, last.npz is written, the run stops
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(loop.Loop, "step", step_then_ctrl_c)
    assert cli.run(train.main, args + ["--out", str(tmp_path / "cut")]) == 130
    monkeypatch.setattr(loop.Loop, "step", real_step)
    cut = load_checkpoint(str(tmp_path / "cut" / "last.npz"))
    assert cut.meta["iteration"] == 2
    resume = ["--resume", str(tmp_path / "cut" / "last.npz")]
    assert cli.run(train.main, args + ["--out", str(tmp_path / "cut")] + resume) == 0

    whole = load_checkpoint(str(tmp_path / "whole" / "last.npz"))
    resumed = load_checkpoint(str(tmp_path / "cut" / "last.npz"))
    assert resumed.meta["iteration"] == 5
    for name, value in whole.model.items():
        assert np.array_equal(value, resumed.model[name]), name
    for name, value in whole.optim.items():
        assert np.array_equal(value, resumed.optim[name]), name
    rows = list(csv.DictReader(open(tmp_path / "cut" / "log.csv")))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5]
    whole_rows = list(csv.DictReader(open(tmp_path / "whole" / "log.csv")))
    assert [r["loss"] for r in rows] == [r["loss"] for r in whole_rows]


def test_staged_init_starts_from_the_coarser_net(trained, tmp_path):
    coarse = str(tmp_path / "32s")
    assert cli.run(train.main, SMALL + ["--model", "fcn32s", "--iters", "1", "--out", coarse]) == 0
    config = train.parse_config(SMALL + ["--model", "fcn16s", "--init", os.path.join(coarse, "last.npz")])
    run, _ = train.prepare(config)
    earlier = model_from_checkpoint(load_checkpoint(os.path.join(coarse, "last.npz")))
    own, theirs = run.model.state_dict(), earlier.state_dict()
    shared = [name for name in theirs if name in own]
    # The trunk (13 convs, fc6, fc7: weights and biases; 15 batch norms: weights, biases, running mean and
    # variance) and score_fr.
    assert len(shared) == 30 + 60 + 2
    for name in shared:
        assert np.array_equal(own[name], theirs[name]), name
    assert theirs["bn3_2.running_var"].std() > 0  # statistics that were learnt, not the initial ones
    assert not run.model.score_pool4.weight.data.any()  # new skip adds nothing at first (Sec. 4.2)
    assert run.batch.__self__.preprocessing is TORCHVISION  # the loop's batches


def test_trunks_of_their_own_widths_see_torchvisions_inputs_from_scratch_and_vgg16_caffes():
    from minifcn.preprocessing import CAFFE

    for backbone, expected, width in (("small-bn", TORCHVISION, 16), ("tiny", TORCHVISION, 4), ("vgg16", CAFFE, 64)):
        run, _ = train.prepare(train.parse_config(SMALL + ["--backbone", backbone, "--iters", "1"]))
        assert run.batch.__self__.preprocessing is expected, backbone
        assert run.model.backbone == backbone and run.model.conv1_1.weight.shape[0] == width


def test_nan_loss_stops_with_the_iteration_and_the_fix(tmp_path, capsys):
    args = SMALL + [
        "--backbone",
        "tiny",
        "--optimizer",
        "sgd",
        "--iters",
        "30",
        "--lr",
        "1e12",
        "--warmup",
        "0",
        "--lr-policy",
        "fixed",
        "--eval-every",
        "30",
        "--checkpoint-every",
        "1",
        "--out",
        str(tmp_path),
    ]
    code, out, err = run_cli(train.main, args, capsys)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("minifcn: error: the loss became") and "lower --lr" in line and "last.npz" in line
    failed_at = int(line.split("at iteration ")[1].split()[0])
    assert 1 < failed_at <= 30
    kept = load_checkpoint(str(tmp_path / "last.npz"))
    assert kept.meta["iteration"] == failed_at - 1
    assert all(np.isfinite(v).all() for v in kept.model.values())


def test_a_parameter_that_overflows_is_never_saved(tmp_path, capsys):
    """With batch norm the loss can stay finite while a weight overflows: the checkpoint refuses it."""
    args = SMALL + [
        "--iters",
        "30",
        "--lr",
        "1e12",
        "--warmup",
        "0",
        "--lr-policy",
        "fixed",
        "--eval-every",
        "30",
        "--checkpoint-every",
        "1",
        "--beta2",  # Adam's slower second moment and fixed upsampling keep the loss finite for a step
        "0.999",
        "--no-learnable-upsampling",
        "--out",
        str(tmp_path),
    ]
    code, out, err = run_cli(train.main, args, capsys)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("minifcn: error: parameter conv1_1.weight is no longer finite after iteration 2")
    assert "last.npz was not overwritten" in line and "lower --lr" in line
    kept = load_checkpoint(str(tmp_path / "last.npz"))
    assert kept.meta["iteration"] == 1
    assert all(np.isfinite(v).all() for v in kept.model.values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "voc"], "--dataset voc needs --data-root"),
        (["--dataset", "voc", "--data-root", "/no/such/devkit"], "'/no/such/devkit' does not exist"),
        (["--dataset", "folder", "--data-root", "."], "--dataset folder needs --n-class"),
        (["--iters", "0"], "--iters must be at least 1"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--image-size", "0"], "--image-size must be at least 16"),
        (["--image-size", "8", "--dataset", "rgbd-shapes"], "--image-size must be at least 16"),
        (["--pad", "60", "--fc6-kernel", "7"], "--pad 60: FCN8s on tiny: pad 60 is too small: below 69"),
        (["--pad", "20"], "--pad 20 --fc6-kernel 4: FCN8s on tiny and a 4x4 fc6: pad 20 is too small: below 21"),
        (
            ["--pad", "69", "--fc6-kernel", "7", "--image-size", "40"],
            "--image-size 40 is too small for --pad 69: fcn8s then needs at least 57",
        ),
        (["--fc6-kernel", "3"], "--fc6-kernel 3: FCN8s on tiny and a 3x3 fc6: its skip maps fall short"),
        (["--fc6-kernel", "0"], "--fc6-kernel 0: fc6_kernel 0: must be at least 1"),
        (
            ["--model", "fcn32s", "--backbone", "tiny-googlenet", "--fc6-kernel", "5"],
            "fc6_kernel 5: tiny-googlenet has no fc6",
        ),
        (["--pad", "-1"], "--pad must be >= 0"),
        (["--beta2", "1"], "--beta2 must lie in [0, 1), got 1.0"),
        (["--image-size", "40"], "--image-size 40 is too small for --pad 21 --fc6-kernel 4"),  # the quick preset's
        (
            ["--crop-size", "48"],
            "--crop-size 48 is too small for --pad 21 --fc6-kernel 4: fcn8s then needs at least 57",
        ),
        (["--pad", "69", "--model", "fcn8s", "--backbone", "alexnet"], "alexnet exists for --model fcn32s only"),
        (["--model", "fcn8s", "--backbone", "alexnet"], "alexnet exists for --model fcn32s only"),
        (["--n-class", "3"], "--n-class 3 does not match the shapes dataset, which has 6"),
        (["--resume", "/no/such/last.npz"], "no such file '/no/such/last.npz'"),
        (["--init", "/no/such/vgg16.caffemodel"], "vgg16.caffemodel"),
        (["--model", "fcn99s"], "argument --model: invalid choice"),
    ],
)
def test_user_mistakes_give_one_line(args, message, capsys, tmp_path):
    code, out, err = run_cli(train.main, args + ["--out", str(tmp_path)], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minifcn: error: ") and message in lines[0], err


def test_less_padding_is_recorded_and_evaluate_rebuilds_the_net(tmp_path, capsys):
    out = str(tmp_path / "pad21")
    args = SMALL + ["--image-size", "64", "--pad", "21", "--fc6-kernel", "4", "--iters", "2", "--eval-every", "2"]
    assert cli.run(train.main, args + ["--out", out]) == 0
    checkpoint = load_checkpoint(os.path.join(out, "last.npz"))
    assert checkpoint.meta["pad"] == 21 and checkpoint.meta["fc6_kernel"] == 4 and checkpoint.meta["image_size"] == 64
    model = model_from_checkpoint(checkpoint)
    assert model.conv1_1.padding == (21, 21) and model.fc6.kernel_size == (4, 4) and model.crop_offsets["score"] == 0
    code, _, err = run_cli(evaluate.main, ["--checkpoint", os.path.join(out, "last.npz"), "--limit", "2"], capsys)
    assert code == 0, err


def test_the_image_size_used_is_the_one_recorded():
    assert train.parse_config(["--preset", "paper", "--dataset", "shapes"]).image_size == 64  # the paper sets none
    assert train.parse_config([]).image_size == 128  # the quick preset's
    assert train.parse_config(["--image-size", "64"]).image_size == 64


def test_a_presets_padding_is_for_its_own_net():
    """The quick preset's fc6 and padding (the least its FCN-8s takes) are for that net; another net starts from
    the paper's: pad 100 and the classifier's fc6, whose size is recorded."""
    geometry = lambda *argv: (lambda c: (c.pad, c.fc6_kernel))(train.parse_config(list(argv)))  # noqa: E731
    assert geometry() == geometry("--backbone", "tiny-bn", "--model", "fcn8s") == (21, 4)
    assert geometry("--model", "fcn32s") == (100, 7)  # 21 is below FCN-32s's least with a 4x4 fc6, 33
    assert geometry("--model", "fcn32s", "--pad", "49", "--fc6-kernel", "5") == (49, 5)
    assert geometry("--pad", "69", "--fc6-kernel", "7") == (69, 7)
    assert geometry("--preset", "camvid-cpu") == geometry("--preset", "camvid") == (21, 4)
    assert geometry("--preset", "paper", "--dataset", "shapes") == (100, 7)
    assert geometry("--model", "fcn32s", "--backbone", "tiny-googlenet") == (100, None)  # GoogLeNet has no fc6
    assert geometry("--model", "fcn32s", "--backbone", "alexnet") == (100, 6)
    quick = train.parse_config([])
    assert quick.learnable_upsampling and quick.beta2 == 0.99
    assert not train.parse_config(["--no-learnable-upsampling"]).learnable_upsampling
    optimiser, _, _ = start.optimizer_for(quick, nn.Conv2d(3, 2, 1), None)
    assert optimiser.betas == (0.9, 0.99)


def test_evaluate_and_predict_mistakes(trained, tmp_path, capsys):
    code, _, err = run_cli(evaluate.main, ["--checkpoint", os.path.join(trained, "config.json")], capsys)
    assert code == 1 and "config.json" in err and "not a readable .npz" in err
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    code, _, err = run_cli(predict.main, ["--checkpoint", str(tmp_path / "other.npz"), "x.png"], capsys)
    assert code == 1 and "is not a minifcn checkpoint" in err
    code, _, err = run_cli(predict.main, ["--checkpoint", os.path.join(trained, "last.npz"), "missing.png"], capsys)
    assert code == 1 and "image 'missing.png' does not exist" in err
    code, _, err = run_cli(
        evaluate.main,
        ["--checkpoint", os.path.join(trained, "last.npz"), "--dataset", "voc", "--data-root", str(tmp_path)],
        capsys,
    )
    assert code == 1 and "ImageSets/Segmentation" in err


def test_command_line_error_has_no_traceback_and_debug_shows_it():
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "minifcn.train", "--dataset", "sbd", "--data-root", "/no/such/sbd"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("minifcn: error: SBDSegmentation: folder '/no/such/sbd' does not exist")
    done = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and "DataError" in done.stderr


def test_resume_and_predict_mistakes_are_named(trained, tmp_path, capsys):
    last = os.path.join(trained, "last.npz")
    cases = [
        (
            train.main,
            SMALL + ["--resume", last, "--model", "fcn32s", "--out", str(tmp_path)],
            "was trained with --model fcn8s, this run asks for fcn32s",
        ),
        (
            train.main,
            SMALL + ["--resume", last, "--optimizer", "sgd", "--iters", "8", "--out", str(tmp_path)],
            "was trained with --optimizer adam, this run asks for sgd",
        ),
        (  # the net's geometry and its upsampling are the checkpoint's: a resumed run cannot change them
            train.main,
            SMALL + ["--resume", last, "--image-size", "64", "--pad", "69", "--iters", "8", "--out", str(tmp_path)],
            "was trained with --pad 100, this run asks for 69",
        ),
        (
            train.main,
            SMALL + ["--resume", last, "--fc6-kernel", "7", "--iters", "8", "--out", str(tmp_path)],
            "was trained with --fc6-kernel 4, this run asks for 7",
        ),
        (
            train.main,
            SMALL + ["--resume", last, "--no-learnable-upsampling", "--iters", "8", "--out", str(tmp_path)],
            "was trained with --learnable-upsampling True, this run asks for False",
        ),
        (
            train.main,
            SMALL + ["--resume", last, "--beta2", "0.999", "--iters", "8", "--out", str(tmp_path)],
            "was trained with --beta2 0.99, this run asks for 0.999",
        ),
        (
            train.main,
            SMALL + ["--resume", last, "--iters", "4", "--out", str(tmp_path)],
            "is at iteration 4, already >= --iters 4",
        ),
        (predict.main, ["--checkpoint", last, "--alpha", "2", "x.png"], "--alpha must lie in [0, 1]"),
        (predict.main, ["--checkpoint", last, "a/x.png", "b/x.png"], "several images share the stem 'x'"),
    ]
    for main, args, message in cases:
        code, _, err = run_cli(main, args, capsys)
        assert code == 1 and message in err, err
    if not cli.cuda_available():
        with pytest.raises(cli.UserError, match="no CUDA device is usable"):
            cli.pick_device("cuda")


def test_init_that_matches_no_array_is_an_error(tmp_path, capsys):
    from test_weights import write_caffemodel  # the byte-by-byte caffemodel writer of the weight tests

    path = tmp_path / "other.caffemodel"
    write_caffemodel(
        path, [("data", []), ("mystery", [np.ones((2, 3, 1, 1), np.float32), np.zeros(2, np.float32)])], False
    )
    code, out, err = run_cli(
        train.main, SMALL + ["--iters", "1", "--init", str(path), "--out", str(tmp_path / "run")], capsys
    )
    assert code == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"minifcn: error: --init {str(path)!r}: no array matched a parameter of fcn8s")
    )


def test_init_from_torchvision_alexnet_starts_fcn_alexnet(tmp_path):
    """--init alexnet.pth (torchvision's layout) fills FCN-AlexNet's trunk (Table 1), with torchvision's
    preprocessing."""
    import zipfile

    from test_weights import write_torch_zip

    from minifcn.models import AlexNet
    from minifcn.weights import _TORCHVISION_NAMES

    source = AlexNet()
    for layer in ("fc6", "fc7", "fc8"):  # mostly zeros, so that the file compresses: 61M parameters
        w = getattr(source, layer).weight
        w.data[:, 8:] = 0
    state = {
        f"{tv}.{kind}": getattr(source, ours).state_dict()[kind]
        for tv, ours in _TORCHVISION_NAMES["alexnet"].items()
        for kind in ("weight", "bias")
    }
    path = str(tmp_path / "alexnet.pth")
    write_torch_zip(path, state, compression=zipfile.ZIP_DEFLATED)
    config = train.parse_config(
        SMALL
        + ["--model", "fcn32s", "--backbone", "alexnet", "--init", path, "--iters", "1", "--out", str(tmp_path / "run")]
    )
    run, _ = train.prepare(config)
    for layer in ("conv1", "conv2", "conv5"):
        np.testing.assert_array_equal(getattr(run.model, layer).weight.data, getattr(source, layer).weight.data)
    fc6 = run.model.fc6.weight.data
    assert fc6.shape == (4096, 256, 6, 6)  # the fully connected layer as a 6x6 convolution over pool5 (Sec. 3.1)
    np.testing.assert_array_equal(fc6.reshape(4096, -1), source.fc6.weight.data)
    assert run.batch.__self__.preprocessing is TORCHVISION


def test_evaluate_and_predict_score_a_complete_caffemodel(tmp_path, capsys):
    """--weights FILE.caffemodel --model fcn8s: the reference's kind of file (every layer, score and upsampling
    included), written byte by byte with known weights, scores exactly as a minifcn FCN8s holding them."""
    from test_weights import write_caffemodel

    from minifcn.models import FCN8s
    from minifcn.preprocessing import CAFFE

    rng = np.random.default_rng(0)
    reference = FCN8s(n_class=6, backbone="tiny")
    for name, p in reference.named_parameters():
        if not name.startswith("upscore"):  # the upsampling stays bilinear, as the reference's
            p.data = (rng.standard_normal(p.shape) * 0.1).astype(np.float32)
    layers = {}
    for name, p in reference.named_parameters():
        layers.setdefault(name.rsplit(".", 1)[0], []).append(p.data)  # weight, then bias
    path = tmp_path / "fcn8s-tiny.caffemodel"
    write_caffemodel(path, list(layers.items()), v1=False)

    out = tmp_path / "eval"
    args = ["--weights", str(path), "--model", "fcn8s", "--backbone", "tiny", "--dataset", "shapes"]
    assert cli.run(evaluate.main, args + ["--image-size", "32", "--limit", "4", "--out", str(out)]) == 0
    scored = json.load(open(out / "metrics.json"))
    val = Shapes("val", 32)
    hist = sum(confusion_matrix(val[i][1], inference.predict(reference, val[i][0], CAFFE), 6) for i in range(4))
    expected = segmentation_scores(hist)
    assert scored["mean_iu"] == pytest.approx(expected["mean_iu"], abs=0) and scored["weights"] == str(path)
    assert set(scored["iu"]) == set(Shapes.classes)

    image = tmp_path / "odd.png"
    Image.fromarray(val[0][0][:29, :31]).save(image)
    assert cli.run(predict.main, args[:6] + ["--out", str(tmp_path / "p"), str(image)]) == 0
    label = np.asarray(Image.open(tmp_path / "p" / "odd.png"))
    np.testing.assert_array_equal(label, inference.predict(reference, val[0][0][:29, :31], CAFFE))

    capsys.readouterr()
    assert cli.run(evaluate.main, ["--weights", str(path), "--dataset", "shapes"]) == 1
    assert "needs --model" in capsys.readouterr().err
    write_caffemodel(tmp_path / "trunk.caffemodel", [("conv1_1", layers["conv1_1"])], v1=False)
    assert cli.run(evaluate.main, ["--weights", str(tmp_path / "trunk.caffemodel"), "--model", "fcn8s"]) == 1
    assert "holds no score_fr layer" in capsys.readouterr().err
    assert cli.run(evaluate.main, ["--weights", str(path), "--model", "fcn32s", "--backbone", "tiny"]) == 1
    assert "lacks ['upscore.weight'] of fcn32s (tiny)" in capsys.readouterr().err  # an FCN-8s file as FCN-32s
    half = {k: v for k, v in layers.items() if k != "score_pool3"}  # FCN-8s without its pool3 skip
    write_caffemodel(tmp_path / "fcn16s.caffemodel", list(half.items()), v1=False)
    args = ["--weights", str(tmp_path / "fcn16s.caffemodel"), "--model", "fcn8s", "--backbone", "tiny"]
    assert cli.run(evaluate.main, args) == 1
    assert "lacks ['score_pool3.weight', 'score_pool3.bias'] of fcn8s (tiny)" in capsys.readouterr().err


def test_a_checkpoint_older_than_the_fc6_setting_has_the_classifiers_fc6(tmp_path, capsys):
    """Checkpoints that do not record fc6's size were all trained with the classifier's: rebuilt and resumed so."""
    out = str(tmp_path / "old")
    args = SMALL + ["--fc6-kernel", "7", "--iters", "2", "--eval-every", "2", "--checkpoint-every", "2"]
    assert cli.run(train.main, args + ["--out", out]) == 0
    last = os.path.join(out, "last.npz")
    arrays = dict(serialization.load(last))
    meta = json.loads(str(arrays["meta"]))
    del meta["fc6_kernel"], meta["config"]["fc6_kernel"]
    serialization.save(last, {**arrays, "meta": json.dumps(meta)})
    assert model_from_checkpoint(load_checkpoint(last)).fc6.kernel_size == (7, 7)
    code, _, err = run_cli(train.main, SMALL + ["--resume", last, "--iters", "4", "--out", out], capsys)
    assert code == 1 and "was trained with --fc6-kernel 7, this run asks for 4" in err  # the quick preset's 4
    code, _, err = run_cli(
        train.main, SMALL + ["--resume", last, "--fc6-kernel", "7", "--iters", "4", "--out", out], capsys
    )
    assert code == 0, err
