"""The docs cannot rot: every Python example in README.md and docs/*.md runs, every command line parses.

Each page's ```python blocks run in order in one namespace, in an empty
folder, as a reader would paste them. A block that reads a file the reader
would have fetched or trained first is marked in the page by an HTML comment
on the line before it, ``<!-- docs-test: fixture NAME -->``, and the test
writes NAME there first (``FIXTURES``): a small stand-in of the same format.

Every ``python -m minifcn.<command> ...`` in the pages' shell blocks is
parsed by that command's own parser (``build_parser()``), so a renamed or
removed flag, or a value its flag refuses, fails here (train's flags are
also checked together, as the command does before it reads anything); the download
command's names must be in the catalogue, and every ``python
benchmarks/<script>.py`` must exist. Links between the pages must lead to
files that exist.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pathlib
import re
import shlex
import zipfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
FIXTURE = re.compile(r"<!-- docs-test: fixture (\S+) -->\s*\Z")
COMMANDS = ("train", "evaluate", "predict", "download")


def blocks(page: pathlib.Path, language: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, fixture or None) of every fenced block of ``language`` on ``page``."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        if m.group(1) != language:
            continue
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1] + "\n"
        fixture = FIXTURE.search(before)
        found.append((text.count("\n", 0, m.start()) + 1, m.group(2), fixture.group(1) if fixture else None))
    return found


# ---------------------------------------------------------------------------
# Fixtures: what a reader would have fetched or trained before running a block


def _vgg16_pth(path: pathlib.Path) -> None:
    """torchvision's VGG16 layout at full size; mostly zeros, so that the file compresses to a few MB."""
    from test_weights import write_torch_zip

    from minifcn.weights import _TORCHVISION_NAMES

    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    shapes = [(w, c, 3, 3) for w, c in zip(widths, [3] + widths[:-1])] + [(4096, 25088), (4096, 4096), (1000, 4096)]
    rng = np.random.default_rng(0)
    state = {}
    for tv, shape in zip(_TORCHVISION_NAMES["vgg16"], shapes):
        weight = np.zeros(shape, np.float32)
        weight.reshape(shape[0], -1)[:, :8] = rng.standard_normal((shape[0], 8)) * 0.01
        state[f"{tv}.weight"], state[f"{tv}.bias"] = weight, np.zeros(shape[0], np.float32)
    write_torch_zip(str(path), state, compression=zipfile.ZIP_DEFLATED)


def _quick_checkpoint(path: pathlib.Path) -> None:
    """A checkpoint of the quick preset's net, trained for one iteration on small images."""
    from minifcn import cli, train

    args = ["--image-size", "64", "--batch-size", "2", "--iters", "1", "--eval-limit", "2", "--samples", "0"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.run(train.main, args + ["--out", str(path.parent)]) == 0
    assert path.exists()


def _colour_label(path: pathlib.Path) -> None:
    """A label drawn in RGB colours: the three of the page's table, and one colour not in it."""
    from PIL import Image

    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, 2:4], rgb[:, 4:6], rgb[:, 6:] = (128, 0, 0), (0, 128, 0), (9, 9, 9)
    Image.fromarray(rgb).save(path)


FIXTURES = {
    "vgg16-397923af.pth": _vgg16_pth,
    "runs/quick/best.npz": _quick_checkpoint,
    "mydata/colour_label.png": _colour_label,
}


# ---------------------------------------------------------------------------
# The Python examples


def _pages_with(language: str) -> list[pathlib.Path]:
    return [page for page in PAGES if blocks(page, language)]


@pytest.mark.parametrize("page", _pages_with("python"), ids=lambda p: p.name)
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for line, code, fixture in blocks(page, "python"):
        if fixture is not None:
            assert fixture in FIXTURES, f"{page.name}:{line}: no fixture called {fixture!r} in tests/test_docs.py"
            target = tmp_path / fixture
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                FIXTURES[fixture](target)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as e:
            pytest.fail(f"{page.relative_to(ROOT)}, the python block at line {line}: {type(e).__name__}: {e}")


def test_pages_hold_examples_and_every_fixture_is_used():
    pages = _pages_with("python")
    assert {p.name for p in pages} >= {"engine.md", "models.md", "training.md", "data.md"}
    used = {fixture for page in pages for _, _, fixture in blocks(page, "python") if fixture}
    assert used == set(FIXTURES)


def test_the_colour_table_example_gives_class_indices(tmp_path, monkeypatch):
    """own-data.md's conversion, run as the page has it, on the fixture: each colour's class, 255 elsewhere."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mydata").mkdir()
    _colour_label(tmp_path / "mydata" / "colour_label.png")
    (code,) = [code for _, code, _ in blocks(ROOT / "docs" / "own-data.md", "python")]
    exec(compile(code, "own-data.md", "exec"), {"__name__": "__docs__"})
    label = np.asarray(Image.open(tmp_path / "mydata" / "label.png"))
    np.testing.assert_array_equal(label[0], [0, 0, 1, 1, 2, 2, 255, 255])


def _write_folder(root: pathlib.Path, n_class: int) -> None:
    """A folder dataset as own-data.md lays it out: images of mixed sizes, labels with 255 borders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = {"train": [(96, 120), (100, 90), (128, 128)], "val": [(96, 110), (64, 80)]}
    for split, shapes in sizes.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for k, (H, W) in enumerate(shapes):
            label = np.kron(rng.integers(0, n_class, size=(H // 8 + 1, W // 8 + 1)), np.ones((8, 8)))[:H, :W]
            label[:2] = 255
            image = (label[..., None] * 60 + rng.integers(0, 40, size=(H, W, 3))).clip(0, 255)
            Image.fromarray(image.astype(np.uint8)).save(root / split / "images" / f"{k:04d}.jpg")
            Image.fromarray(label.astype(np.uint8), mode="L").save(root / split / "labels" / f"{k:04d}.png")
    Image.fromarray(rng.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)).save(root.parent / "photo.jpg")


def test_the_own_data_page_runs_on_a_folder(tmp_path, monkeypatch):
    """Every command of own-data.md, as written, on a small folder of mixed sizes (training cut to 2 iterations)."""
    from PIL import Image

    from minifcn import cli

    monkeypatch.chdir(tmp_path)
    _write_folder(tmp_path / "mydata", 3)
    commands = [words for _, words in command_lines(ROOT / "docs" / "own-data.md")]
    assert [w[2] for w in commands] == ["minifcn.train", "minifcn.train", "minifcn.evaluate", "minifcn.predict"]
    short = ["--iters", "2", "--eval-every", "2", "--samples", "0"]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        for words in commands:
            module = importlib.import_module(words[2])
            argv = words[3:] + (short if words[2] == "minifcn.train" else [])
            assert cli.run(module.main, argv) == 0, (words, out.getvalue())
    assert (tmp_path / "runs" / "mine-crops" / "best.npz").exists()
    metrics = (tmp_path / "runs" / "mine" / "eval" / "metrics.json").read_text()
    assert '"mean_iu"' in metrics
    predicted = Image.open(tmp_path / "predictions" / "photo.png")
    assert predicted.mode == "P" and predicted.size == (90, 70)  # the photo's own size
    assert set(np.unique(np.asarray(predicted))) <= {0, 1, 2}  # class indices, as the page says
    assert (tmp_path / "predictions" / "photo_overlay.png").exists()


# ---------------------------------------------------------------------------
# The command lines


def command_lines(page: pathlib.Path) -> list[tuple[int, list[str]]]:
    """(line number, words) of every command in the page's shell blocks, continuations joined, comments dropped."""
    found = []
    for line, code, _ in blocks(page, "bash"):
        for i, text in enumerate(code.replace("\\\n", " ").splitlines()):
            words = shlex.split(text, comments=True)
            command: list[str] = []
            for word in words + ["&&"]:
                if word in ("&&", "||", ";", "|"):
                    if command:
                        found.append((line + 1 + i, command))
                    command = []
                else:
                    command.append(word)
    return found


def check_command(words: list[str]) -> str | None:
    """What is wrong with one command line of the docs, or None."""
    from minifcn.fetch import CATALOGUE

    if words[:2] == ["python", "-m"] and words[2].startswith("minifcn."):
        name = words[2].split(".", 1)[1]
        if name not in COMMANDS:
            return f"no command minifcn.{name}"
        parser = importlib.import_module(f"minifcn.{name}").build_parser()
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                args = parser.parse_args(words[3:])
        except SystemExit as e:
            if e.code not in (0, None):
                return err.getvalue().strip() or f"exit status {e.code}"
            return None
        unknown = [n for n in getattr(args, "names", []) if name == "download" and n not in CATALOGUE]
        if unknown:
            return f"not in the download catalogue: {unknown}"
        if name == "train":  # the flags together: what the command checks before it reads anything
            from minifcn import cli, train

            try:
                train.parse_config(words[3:])
            except (cli.UserError, ValueError) as e:
                return str(e)
        return None
    if words[:1] == ["python"] and len(words) > 1 and words[1].startswith("benchmarks/"):
        return None if (ROOT / words[1]).is_file() else f"no script {words[1]}"
    return None


def test_every_command_line_parses():
    checked, wrong = 0, []
    for page in PAGES:
        for line, words in command_lines(page):
            problem = check_command(words)
            checked += words[:2] == ["python", "-m"] and len(words) > 2 and words[2].startswith("minifcn.")
            if problem:
                wrong.append(f"{page.relative_to(ROOT)}:{line}: {shlex.join(words)}\n    {problem}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 25  # the pages' commands were found at all


def test_a_wrong_flag_or_value_is_caught():
    assert check_command(["python", "-m", "minifcn.train", "--iters", "10"]) is None
    assert "--iterations" in check_command(["python", "-m", "minifcn.train", "--iterations", "10"])
    assert "invalid choice" in check_command(["python", "-m", "minifcn.train", "--model", "fcn4s"])
    assert "invalid int value" in check_command(["python", "-m", "minifcn.evaluate", "--limit", "many"])
    assert "catalogue" in check_command(["python", "-m", "minifcn.download", "voc2007"])
    assert "no script" in check_command(["python", "benchmarks/bench_nothing.py"])
    assert "no command" in check_command(["python", "-m", "minifcn.serve"])
    assert "--init-depth" in check_command(["python", "-m", "minifcn.train", "--init-depth", "d.npz"])


# Where the docs say a download lands: data/... (the download's default root) must be a place the catalogue's
# entries land in, or lie inside one.
DATA_PATH = re.compile(r"(?<![\w./-])data/([\w./-]*\w)")


def wrong_download_path(path: str) -> str | None:
    """None if ``path`` (below the download root) is where a catalogue entry lands, or in one; else why not."""
    from minifcn.fetch import CATALOGUE

    entries = CATALOGUE.values() if isinstance(CATALOGUE, dict) else CATALOGUE
    places = [entry.lands.split()[0] for entry in entries]
    if any(place == path or place.startswith(path + "/") or path.startswith(place + "/") for place in places):
        return None
    return f"data/{path}: no download lands there (the catalogue's places: {', '.join(places)})"


def test_every_download_path_a_page_names_is_where_the_download_lands():
    wrong, checked = [], 0
    for page in PAGES:
        for m in DATA_PATH.finditer(page.read_text(encoding="utf-8")):
            checked += 1
            if problem := wrong_download_path(m.group(1)):
                wrong.append(f"{page.relative_to(ROOT)}: {problem}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 15
    assert wrong_download_path("downloads/bvlc_googlenet.caffemodel") is None
    assert wrong_download_path("TrainVal/VOCdevkit") is None and wrong_download_path("CamVid/train") is None
    assert "no download" in wrong_download_path("downloads/bvlc_googlenet")
    assert "no download" in wrong_download_path("VOC2011-devkit")


def test_help_that_names_a_flag_names_one_the_command_has():
    """Every --flag named in a command's --help is a flag of that command."""
    from minifcn import evaluate, predict, train

    for command in (train, evaluate, predict):
        parser = command.build_parser()
        flags = {option for action in parser._actions for option in action.option_strings}
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", parser.format_help()))
        assert named <= flags, f"{parser.prog} --help names {sorted(named - flags)}, which it does not take"


# ---------------------------------------------------------------------------
# Links and pictures


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_links_between_pages_lead_somewhere():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
