"""benchmarks/gpu_camvid.sh, run on a copy in a temporary folder (it works in the folder above its own): `split`
puts every image in one of two halves with the labels and the list in the second, and ignores both; the errors
name what is missing and exit 2 before anything is written."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "gpu_camvid.sh")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
def repo(tmp_path):
    """A folder laid out as the repository where the script looks: benchmarks/gpu_camvid.sh and .git/info/."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / ".git" / "info").mkdir(parents=True)
    shutil.copy(SCRIPT, tmp_path / "benchmarks" / "gpu_camvid.sh")
    return tmp_path


def run(repo, *args):
    return subprocess.run(["bash", str(repo / "benchmarks" / "gpu_camvid.sh"), *args], capture_output=True, text=True)


def fake_camvid(root, n: int):
    """A CamVid root of ``n`` tiny training images and labels, and its train.txt."""
    for folder in ("train", "trainannot"):
        (root / folder).mkdir(parents=True)
    lines = []
    for i in range(n):
        name = f"0001TP_{i:06d}.png"
        Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(root / "train" / name)
        Image.fromarray(np.full((4, 6), i % 11, np.uint8)).save(root / "trainannot" / name)
        lines.append(f"/SegNet/CamVid/train/{name} /SegNet/CamVid/trainannot/{name}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")


def test_split_puts_each_image_in_one_half_and_the_labels_with_the_second(repo, tmp_path):
    fake_camvid(tmp_path / "CamVid", 7)
    assert run(repo, "split", str(tmp_path / "CamVid")).returncode == 0
    first = sorted(os.listdir(repo / ".camvid-a" / "train"))
    second = sorted(os.listdir(repo / ".camvid-b" / "train"))
    assert len(first) == 4 and len(second) == 3  # the first half takes the odd one
    assert first + second == sorted(os.listdir(tmp_path / "CamVid" / "train"))
    assert sorted(os.listdir(repo / ".camvid-b" / "trainannot")) == first + second
    assert (repo / ".camvid-b" / "train.txt").read_text() == (tmp_path / "CamVid" / "train.txt").read_text()
    assert not (repo / ".camvid-a" / "trainannot").exists()
    for _ in range(2):  # split again: the ignore lines are not repeated
        run(repo, "split", str(tmp_path / "CamVid"))
    assert (repo / ".git" / "info" / "exclude").read_text().splitlines() == ["/.camvid-a/", "/.camvid-b/"]
    check = run(repo, "check")
    assert check.stdout.splitlines() == [".camvid-a: 4 images", ".camvid-b: 3 images"]


def test_each_error_names_what_is_missing_and_writes_nothing(repo, tmp_path):
    (tmp_path / "empty").mkdir()
    split = run(repo, "split", str(tmp_path / "empty"))
    assert split.returncode == 2 and "has no train.txt" in split.stderr and not (repo / ".camvid-a").exists()
    fake_camvid(tmp_path / "CamVid", 2)
    run(repo, "split", str(tmp_path / "CamVid"))
    shutil.rmtree(repo / ".camvid-a")  # as on a machine where the first half never arrived
    train = run(repo, "train")
    assert train.returncode == 2 and ".camvid-a is missing" in train.stderr and not (repo / "runs").exists()
    wrong = run(repo, "train-now")
    assert wrong.returncode == 2 and "usage: gpu_camvid.sh" in wrong.stderr
