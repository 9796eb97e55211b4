"""CamVid as the SegNet tutorial distributes it: the loader, class weights, colours, and the command lines.

Fixtures are written here in the same layout (absolute-path lines, 'L' labels with 11 = void, a test
split); the real files in ../shared/data/CamVid are read when present (a user's clone lacks them).
"""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from minifcn import cli, evaluate, predict, train
from minifcn.checkpoint import load_checkpoint
from minifcn.data import (
    CAMVID_CLASSES,
    HELD_OUT_DRIVE,
    CamVid,
    DataError,
    enet_weights,
    median_frequency_weights,
    read_class_weights,
)
from minifcn.viz import CAMVID_COLOURS, colorize, overlay

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "CamVid")


def write_camvid(root, splits=("train", "val", "test"), n=3, size=(24, 32), seed=0, drives=None):
    """CamVid in miniature: <split>.txt with the authors' absolute paths, RGB PNGs, 'L' labels 0..11. Image k of a
    split comes from drive ``drives[split][k % len(...)]`` (default: all from 0001TP)."""
    rng = np.random.default_rng(seed)
    labels = {}
    for split in splits:
        os.makedirs(os.path.join(root, split), exist_ok=True)
        os.makedirs(os.path.join(root, split + "annot"), exist_ok=True)
        lines = []
        for k in range(n):
            split_drives = (drives or {}).get(split, ("0001TP",))
            name = f"{split_drives[k % len(split_drives)]}_{k:06d}.png"
            image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            label = rng.integers(0, 12, size).astype(np.uint8)  # 11 = void
            Image.fromarray(image).save(os.path.join(root, split, name))
            Image.fromarray(label, mode="L").save(os.path.join(root, split + "annot", name))
            labels[(split, k)] = label
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        with open(os.path.join(root, f"{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return labels


def test_reads_every_split_listed_with_void_as_255(tmp_path):
    labels = write_camvid(tmp_path)
    for split in ("train", "val", "test"):  # test too, since this root has test.txt
        data = CamVid(str(tmp_path), split)
        assert len(data) == 3 and data.n_class == 11 and data.classes == CAMVID_CLASSES
        image, label = data[1]
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8
        expected = labels[(split, 1)].astype(np.int64)
        expected[expected == 11] = 255
        np.testing.assert_array_equal(label, expected)
        assert data.name(1) == "0001TP_000001"


def test_errors_name_the_file(tmp_path):
    write_camvid(tmp_path, splits=("train",))
    with pytest.raises(DataError, match=r"no split 'val' in .*splits there: train"):
        CamVid(str(tmp_path), "val")
    with pytest.raises(DataError, match=r"folder .*nowhere.* does not exist"):
        CamVid(str(tmp_path / "nowhere"))
    with open(tmp_path / "train.txt", "a") as f:
        f.write("/SegNet/CamVid/train/only_one_path.png\n")
    with pytest.raises(DataError, match=r"train.txt' line 4 holds 1 paths, expected two"):
        CamVid(str(tmp_path), "train")
    write_camvid(tmp_path, splits=("train",))
    os.remove(tmp_path / "trainannot" / "0001TP_000002.png")
    with pytest.raises(DataError, match=r"label of image .*0001TP_000002.png' is missing"):
        CamVid(str(tmp_path), "train")
    write_camvid(tmp_path, splits=("train",))
    Image.fromarray(np.full((24, 32), 12, np.uint8), mode="L").save(tmp_path / "trainannot" / "0001TP_000000.png")
    with pytest.raises(DataError, match=r"trainannot/0001TP_000000.png' holds values 12 outside \[0, 11\)"):
        CamVid(str(tmp_path), "train")[0]


def test_a_drive_held_out_of_train(tmp_path):
    """'train-without-<drive>' is train less that drive's images; '<drive>' is that drive's images in every split."""
    drives = {"train": ("0001TP", "0006R0", "0016E5"), "val": ("0016E5",), "test": ("Seq05VD",)}
    labels = write_camvid(tmp_path, n=6, drives=drives)
    root = str(tmp_path)
    rest, held = CamVid(root, "train-without-0006R0"), CamVid(root, HELD_OUT_DRIVE)
    assert [rest.name(i) for i in range(len(rest))] == [
        f"{d}_{k:06d}" for k, d in enumerate(drives["train"] * 2) if d != "0006R0"
    ]
    assert [held.name(i) for i in range(len(held))] == ["0006R0_000001", "0006R0_000004"]
    assert held.drives() == {"0006R0": 2} and rest.drives() == {"0001TP": 2, "0016E5": 2}
    expected = labels[("train", 4)].astype(np.int64)
    expected[expected == 11] = 255
    np.testing.assert_array_equal(held[1][1], expected)  # the same file as train's image 4
    assert CamVid(root, "0016E5").drives() == {"0016E5": 8}  # 2 in train, 6 in val
    assert len(CamVid(root, "train-without-Seq05VD")) == 6  # a drive train lacks takes nothing away
    with pytest.raises(DataError, match=r"no split 'Seq06' .*drives: 0001TP, 0006R0, 0016E5, Seq05VD"):
        CamVid(root, "Seq06")
    with pytest.raises(DataError, match=r"no split 'train-without-X9'"):
        CamVid(root, "train-without-X9")
    write_camvid(tmp_path / "one", splits=("train",), n=2)  # a single drive: nothing left once it is held out
    with pytest.raises(DataError, match=r"split 'train-without-0001TP' .* holds no images: train has no other drive"):
        CamVid(str(tmp_path / "one"), "train-without-0001TP")


@pytest.mark.skipif(not os.path.isdir(REAL), reason="../shared/data/CamVid is not here")
def test_the_real_files():
    train_set, val_set = CamVid(REAL, "train"), CamVid(REAL, "val")
    assert (len(train_set), len(val_set)) == (367, 101)
    assert train_set.drives() == {"0001TP": 62, "0006R0": 101, "0016E5": 204} and val_set.drives() == {"0016E5": 101}
    assert len(CamVid(REAL, "train-without-0006R0")) == 266 and len(CamVid(REAL, "0006R0")) == 101
    image, label = val_set[0]
    assert image.shape == (360, 480, 3) and label.shape == (360, 480)
    assert set(np.unique(label)) <= set(range(11)) | {255}


def test_median_frequency_weights_against_a_direct_count(tmp_path):
    write_camvid(tmp_path, splits=("train",), n=4, size=(10, 12), seed=3)
    data = CamVid(str(tmp_path), "train")
    pixels, image_pixels = np.zeros(11), np.zeros(11)
    for i in range(len(data)):
        label = data[i][1]
        labelled = label != 255
        for c in range(11):
            if (label == c).any():
                pixels[c] += (label == c).sum()
                image_pixels[c] += labelled.sum()
    freq = pixels / image_pixels
    np.testing.assert_allclose(median_frequency_weights(data), np.median(freq) / freq, rtol=1e-12)
    share = pixels / pixels.sum()  # ENet: each class's share of every labelled pixel of the split
    np.testing.assert_allclose(enet_weights(data), [1 / math.log(1.02 + p) for p in share], rtol=1e-12)


def test_a_class_that_never_appears_weighs_zero(tmp_path):
    write_camvid(tmp_path, splits=("train",), n=2, size=(6, 6))
    for name in os.listdir(tmp_path / "trainannot"):
        Image.fromarray(np.array([[0, 1, 11]] * 6 * 2, np.uint8).reshape(6, 6), mode="L").save(
            tmp_path / "trainannot" / name
        )
    weights = median_frequency_weights(CamVid(str(tmp_path), "train"))
    assert weights[0] == weights[1] == pytest.approx(1.0) and (weights[2:] == 0).all()
    weights = enet_weights(CamVid(str(tmp_path), "train"))  # sky and building, half the labelled pixels each
    assert weights[0] == weights[1] == pytest.approx(1 / math.log(1.52)) and (weights[2:] == 0).all()
    for name in os.listdir(tmp_path / "trainannot"):  # every pixel void: no share to weigh by
        Image.fromarray(np.full((6, 6), 11, np.uint8), mode="L").save(tmp_path / "trainannot" / name)
    for weigh in (enet_weights, median_frequency_weights):
        with pytest.raises(DataError, match="no labelled pixels, so no class frequencies"):
            weigh(CamVid(str(tmp_path), "train"))


def test_class_weights_from_a_file(tmp_path):
    (tmp_path / "w.txt").write_text("1, 2 3\n4")
    np.testing.assert_array_equal(read_class_weights(str(tmp_path / "w.txt"), 4), [1, 2, 3, 4])
    np.save(tmp_path / "w.npy", np.arange(3.0))
    np.testing.assert_array_equal(read_class_weights(str(tmp_path / "w.npy"), 3), [0, 1, 2])
    with pytest.raises(DataError, match=r"w.txt' hold 4 values; the dataset has 11 classes"):
        read_class_weights(str(tmp_path / "w.txt"), 11)
    (tmp_path / "bad.txt").write_text("1 -2")
    with pytest.raises(DataError, match=r"finite and >= 0"):
        read_class_weights(str(tmp_path / "bad.txt"), 2)


def test_camvid_colours():
    label = np.array([[0, 3, 10, 255]])
    rgb = np.asarray(colorize(label, "camvid").convert("RGB"))
    assert [tuple(p) for p in rgb[0]] == [CAMVID_COLOURS[0], CAMVID_COLOURS[3], CAMVID_COLOURS[10], (0, 0, 0)]
    assert CAMVID_COLOURS[3] == (128, 64, 128)  # road, as everyone draws it
    image = np.full((1, 4, 3), 200, np.uint8)
    painted = np.asarray(overlay(image, label, 1.0, "camvid"))
    assert tuple(painted[0, 0]) == CAMVID_COLOURS[0]  # sky is a class here (VOC's 0 is background, left alone)
    assert tuple(painted[0, 3]) == (200, 200, 200)  # void is left alone
    with pytest.raises(ValueError, match=r"unknown palette 'kitti'"):
        colorize(label, "kitti")


SMALL = [
    "--dataset",
    "camvid",
    "--batch-size",
    "2",
    "--iters",
    "2",
    "--eval-every",
    "2",
    "--checkpoint-every",
    "2",
    "--samples",
    "1",
    "--crop-size",
    "24",
    "--pad",  # crops this small need the paper's padding
    "100",
]


def test_train_evaluate_predict_on_camvid_with_median_frequency_weights(tmp_path, capsys):
    root = tmp_path / "CamVid"
    write_camvid(root, size=(24, 32))
    out = tmp_path / "run"
    args = SMALL + ["--data-root", str(root), "--class-weights", "median-freq", "--out", str(out)]
    assert cli.run(train.main, args) == 0
    printed = capsys.readouterr().out
    assert "class weights (median-freq): sky" in printed
    meta = load_checkpoint(str(out / "last.npz")).meta
    expected = median_frequency_weights(CamVid(str(root), "train"))
    np.testing.assert_allclose(meta["class_weights"], expected)
    assert meta["dataset"] == "camvid" and meta["classes"] == list(CAMVID_CLASSES) and meta["palette"] == "camvid"
    strip = np.asarray(Image.open(next((out / "samples").iterdir())).convert("RGB"))
    # under the panels' names (18 rows): image | truth | prediction enlarged 4x (24x32 -> 96x128), 4 px apart,
    # then the legend: the truth in CamVid colours
    truth_panel = strip[18 : 18 + 96, 132:260].reshape(-1, 3)
    assert {tuple(p) for p in truth_panel} <= set(CAMVID_COLOURS) | {(0, 0, 0)}

    assert (
        cli.run(
            evaluate.main,
            ["--checkpoint", str(out / "last.npz"), "--data-root", str(root), "--out", str(tmp_path / "eval")],
        )
        == 0
    )
    scores = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert 0.0 <= scores["mean_iu"] <= 1.0
    image = tmp_path / "street.png"
    Image.fromarray(CamVid(str(root), "val")[0][0]).save(image)
    assert (
        cli.run(predict.main, ["--checkpoint", str(out / "last.npz"), "--out", str(tmp_path / "pred"), str(image)]) == 0
    )
    prediction = np.asarray(Image.open(tmp_path / "pred" / "street.png").convert("RGB")).reshape(-1, 3)
    assert {tuple(p) for p in prediction} <= set(CAMVID_COLOURS)


def test_class_weight_mistakes_give_one_line(tmp_path, capsys):
    root = tmp_path / "CamVid"
    write_camvid(root)
    args = SMALL + ["--data-root", str(root), "--class-weights", str(tmp_path / "missing.txt"), "--out", str(tmp_path)]
    assert cli.run(train.main, args) == 1
    assert capsys.readouterr().err.strip() == f"minifcn: error: class weights '{tmp_path / 'missing.txt'}' do not exist"


@pytest.mark.parametrize("preset", ["camvid", "camvid-cpu"])
def test_the_camvid_presets_end_to_end(preset, tmp_path, capsys):
    """Each preset, as it stands, for two iterations on fixtures: its recipe reaches the run and the checkpoint."""
    root = tmp_path / "CamVid"
    write_camvid(root, size=(60, 64))  # the presets' net (pad 21, 4x4 fc6) takes 57 pixels a side or more
    out = tmp_path / preset
    args = [
        "--preset",
        preset,
        "--data-root",
        str(root),
        "--iters",
        "2",
        "--eval-every",
        "2",
        "--batch-size",
        "2",
        "--samples",
        "0",
        "--out",
        str(out),
    ]
    assert cli.run(train.main, args) == 0
    config = json.load(open(out / "config.json"))
    expected = train.PRESETS[preset]
    for key in ("model", "backbone", "optimizer", "lr", "lr_policy", "augment", "class_weights", "score_init"):
        assert config[key] == expected[key], key
    assert config["dataset"] == "camvid" and config["class_weights"] == "enet"
    assert (config["pad"], config["fc6_kernel"]) == (21, 4)  # the quick net's geometry
    assert config["crop_size"] is None and config["iters"] == 2  # whole 480x360 images; --iters overrides the preset
    assert expected["iters"] == (1360 if preset == "camvid-cpu" else 4000)
    assert expected["backbone"] == ("tiny-bn" if preset == "camvid-cpu" else "small-bn")
    help_text = " ".join(train.build_parser().format_help().split())
    assert f"camvid-cpu {train.PRESETS['camvid-cpu']['iters']})" in help_text  # --help states the presets' iterations
    rows = open(out / "log.csv").read().splitlines()[1:]
    assert len(rows) == 2 and rows[-1].split(",")[-2] != ""  # evaluated at the end: mean IU logged
    assert "class weights (enet)" in capsys.readouterr().out


def test_a_split_without_labelled_pixels_has_no_frequencies(tmp_path):
    write_camvid(tmp_path, splits=("train",), n=2, size=(4, 4))
    for name in os.listdir(tmp_path / "trainannot"):
        Image.fromarray(np.full((4, 4), 11, np.uint8), mode="L").save(tmp_path / "trainannot" / name)
    with pytest.raises(DataError, match=r"no labelled pixels, so no class frequencies"):
        median_frequency_weights(CamVid(str(tmp_path), "train"))


def test_class_weights_refuse_several_heads(tmp_path, capsys):
    args = [
        "--dataset",
        "two-label-shapes",
        "--image-size",
        "64",
        "--iters",
        "1",
        "--class-weights",
        "median-freq",
        "--out",
        str(tmp_path),
    ]
    assert cli.run(train.main, args) == 1
    assert "--class-weights median-freq: not available with several heads (shape, colour)" in capsys.readouterr().err


def test_train_on_train_without_a_drive_and_score_on_it(tmp_path, capsys):
    """The held-out recipe on the command line: ENet's weights from the training split actually used."""
    root = tmp_path / "CamVid"
    write_camvid(root, size=(24, 32), n=4, drives={"train": ("0001TP", "0006R0"), "val": ("0016E5",)})
    out = tmp_path / "run"
    splits = ["--train-split", "train-without-0006R0", "--val-split", "0006R0", "--class-weights", "enet"]
    assert cli.run(train.main, SMALL + ["--data-root", str(root), *splits, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 training and 2 val images" in printed
    meta = load_checkpoint(str(out / "last.npz")).meta
    np.testing.assert_allclose(meta["class_weights"], enet_weights(CamVid(str(root), "train-without-0006R0")))
    config = json.load(open(out / "config.json"))
    assert (config["train_split"], config["val_split"]) == ("train-without-0006R0", "0006R0")
