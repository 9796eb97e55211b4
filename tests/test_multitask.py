"""python -m minifcn.train / evaluate / predict with two labels per pixel (Sec. 5, SIFT Flow): --heads."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from minifcn import cli, evaluate, inference, predict, train
from minifcn.checkpoint import load_checkpoint, model_from_checkpoint
from minifcn.data import Shapes, TwoLabelShapes
from minifcn.metrics import confusion_matrix, segmentation_scores
from minifcn.models import MultiHeadFCN
from minifcn.preprocessing import TORCHVISION

SMALL = [
    "--pad",  # images this small need the paper's padding
    "100",
    "--dataset",
    "two-label-shapes",
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


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    assert cli.run(train.main, SMALL + ["--out", str(out)]) == 0
    return out


def test_train_two_heads_writes_both_metrics(two_heads):
    last = load_checkpoint(str(two_heads / "last.npz"))
    assert last.meta["heads"] == {"shape": 6, "colour": 3}
    model = model_from_checkpoint(last)
    assert isinstance(model, MultiHeadFCN) and "colour.score_fr.weight" in last.model
    metrics = json.load(open(two_heads / "metrics.json"))
    assert set(metrics["heads"]) == {"shape", "colour"} and set(metrics["heads"]["colour"]["iu"]) == {
        "background",
        "warm",
        "cool",
    }
    assert metrics["mean_iu"] == metrics["heads"]["shape"]["mean_iu"]  # the first head leads
    # Recomputed here from the saved weights, head by head:
    val = TwoLabelShapes("val", 32)
    for k, head in enumerate(("shape", "colour")):
        hist = sum(
            confusion_matrix(
                val[i][1][..., k], inference.predict(model, val[i][0], TORCHVISION, head=head), 6 if k == 0 else 3
            )
            for i in range(4)
        )
        assert metrics["heads"][head]["mean_iu"] == pytest.approx(segmentation_scores(hist)["mean_iu"], rel=1e-6)
    rows = open(two_heads / "log.csv").read().splitlines()
    assert len(rows) == 5 and rows[2].split(",")[6] != ""  # mean IU logged at iteration 2


def test_evaluate_and_predict_two_heads(two_heads, tmp_path, capsys):
    code = cli.run(evaluate.main, ["--checkpoint", str(two_heads / "last.npz"), "--limit", "4", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "head shape:" in out and "head colour:" in out and "warm" in out
    result = json.load(open(tmp_path / "metrics.json"))
    trained = json.load(open(two_heads / "metrics.json"))
    for head in ("shape", "colour"):
        assert result["heads"][head]["mean_iu"] == pytest.approx(trained["heads"][head]["mean_iu"], rel=1e-6)
    assert os.path.exists(tmp_path / "predictions" / "00000_colour.png")
    Image.fromarray(Shapes("val", 32)[0][0]).save(tmp_path / "im.png")
    code = cli.run(
        predict.main,
        ["--checkpoint", str(two_heads / "last.npz"), "--out", str(tmp_path / "p"), str(tmp_path / "im.png")],
    )
    assert code == 0
    assert os.path.exists(tmp_path / "p" / "im_shape.png") and os.path.exists(tmp_path / "p" / "im_colour_overlay.png")


def test_one_head_chosen(tmp_path):
    assert cli.run(train.main, SMALL + ["--heads", "colour", "--out", str(tmp_path)]) == 0
    last = load_checkpoint(str(tmp_path / "last.npz"))
    assert last.meta["heads"] == {"colour": 3}
    assert set(json.load(open(tmp_path / "metrics.json"))["iu"]) == {"background", "warm", "cool"}
    model = model_from_checkpoint(last)
    image, labels = TwoLabelShapes("val", 32)[0]
    assert inference.predict(model, image, TORCHVISION).max() <= 2
    # Scored against the colour labels (index 1 of the dataset's), not the shape labels at the model's index 0.
    val = TwoLabelShapes("val", 32)
    hist = sum(
        confusion_matrix(val[i][1][..., 1], inference.predict(model, val[i][0], TORCHVISION), 3) for i in range(4)
    )
    metrics = json.load(open(tmp_path / "metrics.json"))
    assert metrics["mean_iu"] == pytest.approx(segmentation_scores(hist)["mean_iu"], rel=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--heads", "shape"], "--heads is for datasets with several labels (two-label-shapes, siftflow), not shapes"),
        (SMALL + ["--heads", "shape,size"], "--heads 'shape,size': choose distinct names among shape, colour"),
        (SMALL + ["--heads", "shape,shape"], "choose distinct names"),
    ],
)
def test_heads_errors(args, message, capsys):
    assert cli.run(train.main, args) == 1
    assert message in capsys.readouterr().err


def test_resume_two_heads_continues(tmp_path):
    fixed = SMALL + ["--lr-policy", "fixed"]  # so that the lr does not depend on --iters
    assert cli.run(train.main, fixed + ["--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "run"
    assert cli.run(train.main, fixed + ["--iters", "2", "--out", str(out)]) == 0
    assert cli.run(train.main, fixed + ["--resume", str(out / "last.npz"), "--out", str(out)]) == 0
    resumed, whole = load_checkpoint(str(out / "last.npz")), load_checkpoint(str(tmp_path / "whole" / "last.npz"))
    assert resumed.meta["iteration"] == 4
    for name, array in whole.model.items():
        np.testing.assert_array_equal(resumed.model[name], array, err_msg=name)  # bit for bit, both heads
