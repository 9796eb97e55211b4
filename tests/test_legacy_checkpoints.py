"""Checkpoints in the earlier layout still load, evaluate, predict and resume.

tests/data/legacy_<dataset>.json hold what the train command of commit
3575c16 wrote: the metadata exactly, and each array's name, shape and dtype
(the weights themselves are random here: what must still fit is the names,
the shapes and the metadata). One file each for an ordinary net, a two-head
net (Sec. 5, SIFT Flow) and an early-fusion RGB-D net (Sec. 5, NYUDv2).
"""

import json
import os

import numpy as np
import pytest

import minifcn as mf
from minifcn import cli, evaluate, predict, save, train
from minifcn.checkpoint import heads_of, load_checkpoint, model_from_checkpoint, preprocessing_of
from minifcn.data import Shapes

DATA = os.path.join(os.path.dirname(__file__), "data")
DATASETS = ["shapes", "two-label-shapes", "rgbd-shapes"]


def write_legacy(dataset, path):
    with open(os.path.join(DATA, f"legacy_{dataset}.json"), encoding="utf-8") as f:
        legacy = json.load(f)
    rng = np.random.default_rng(0)
    arrays = {"meta": json.dumps(legacy["meta"])}
    for name, (shape, dtype, *value) in legacy["arrays"].items():
        if value:
            arrays[name] = np.asarray(value[0], dtype)
        elif name.startswith("model.") and name.endswith("running_var"):
            arrays[name] = (1 + rng.random(shape)).astype(dtype)
        elif name.startswith("model."):
            arrays[name] = (0.05 * rng.standard_normal(shape)).astype(dtype)
        else:  # the optimiser's moments
            arrays[name] = (1e-4 * rng.random(shape)).astype(dtype)
    save(path, arrays)
    return legacy


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_legacy_checkpoint_loads_scores_and_resumes(dataset, tmp_path, capsys):
    path = str(tmp_path / "last.npz")
    legacy = write_legacy(dataset, path)
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint)
    assert sorted("model." + k for k in model.state_dict()) == sorted(k for k in legacy["arrays"] if k[:6] == "model.")
    assert preprocessing_of(checkpoint).name == legacy["meta"]["preprocessing"]
    heads = heads_of(checkpoint)
    if legacy["meta"]["heads"]:
        assert heads.sizes() == legacy["meta"]["heads"]
        assert {h.name: list(h.classes) for h in heads} == legacy["meta"]["head_classes"]
    else:
        assert list(heads.first.classes) == legacy["meta"]["classes"] and not heads.several

    assert cli.run(evaluate.main, ["--checkpoint", path, "--limit", "2", "--out", str(tmp_path / "eval")]) == 0
    scored = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert scored["images"] == 2
    # The score is the net's own: its argmax against the labels of the first two images, by a direct loop.
    val_set = cli.build_dataset(legacy["meta"]["dataset"], "val", None, None, None, legacy["meta"]["image_size"])
    preprocessing, correct, counted = preprocessing_of(checkpoint), 0, 0
    model.eval()
    for i in range(2):
        image, label = val_set[i]
        with mf.no_grad():
            scores = model(mf.Tensor(preprocessing(image)[None]))
        if isinstance(scores, dict):  # two heads: the first is scored at the top level
            scores, label = scores[heads.first.name], label[..., 0]
        valid = label != 255
        correct += int((scores.data[0].argmax(axis=0) == label)[valid].sum())
        counted += int(valid.sum())
    assert scored["pixel_acc"] == pytest.approx(correct / counted, rel=1e-12)
    if legacy["meta"]["fusion"] is None:
        image = tmp_path / "im.png"
        from PIL import Image

        Image.fromarray(Shapes("val", 32)[0][0]).save(image)
        assert cli.run(predict.main, ["--checkpoint", path, "--out", str(tmp_path / "p"), str(image)]) == 0

    args = ["--dataset", dataset, "--image-size", "32", "--iters", "2", "--batch-size", "2", "--eval-limit", "2"]
    args += ["--pad", "100", "--fc6-kernel", "7", "--no-learnable-upsampling", "--beta2", "0.999"]  # as it was trained
    args += ["--samples", "0", "--resume", path, "--out", str(tmp_path)]
    assert cli.run(train.main, args) == 0
    assert "resuming from" in capsys.readouterr().out
    assert load_checkpoint(path).meta["iteration"] == 2


def test_checkpoint_errors_name_the_file(tmp_path, capsys):
    path = str(tmp_path / "last.npz")
    legacy = write_legacy("shapes", path)
    meta = dict(legacy["meta"], preprocessing="imagenet-yuv")
    arrays = dict(np.load(path))
    save(path, dict(arrays, meta=json.dumps(meta)))
    with pytest.raises(ValueError, match=r"last.npz': unknown preprocessing 'imagenet-yuv'; known: caffe"):
        preprocessing_of(load_checkpoint(path))
    # A 6-class net scored on a 3-class task: the evaluate command says which file and both counts.
    write_legacy("shapes", path)
    assert cli.run(evaluate.main, ["--checkpoint", path, "--dataset", "two-label-shapes", "--image-size", "32"]) == 1
    err = capsys.readouterr().err
    assert "last.npz': the net predicts 6 classes but the dataset has {'shape': 6, 'colour': 3}" in err
