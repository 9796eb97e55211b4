"""What a user reads speaks of the software as it is: no issue numbers, no sessions, no lent machines; and the
small things a user expects (a licence, one version, --version, python -m minifcn)."""

import contextlib
import io
import pathlib
import re
import subprocess
import sys

import pytest

import minifcn
from minifcn import cli, download, evaluate, predict, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
HISTORY = re.compile(r"(?i)issue[ -]?\d|\bsessions?\b|was lent")
COMMANDS = {"train": train.main, "evaluate": evaluate.main, "predict": predict.main, "download": download.main}


def _help(main):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    return out.getvalue()


def markdown_files() -> list[pathlib.Path]:
    """Every Markdown file of the repository (README, docs, benchmarks, ...), outside hidden and build folders."""
    skip = {"runs", "data", "build", "dist", "venv", "node_modules"}
    return [
        p
        for p in ROOT.rglob("*.md")
        if not any(
            part.startswith(".") or part in skip or part.endswith(".egg-info")
            for part in p.relative_to(ROOT).parts[:-1]
        )
    ]


def test_no_history_in_what_users_read():
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in markdown_files()}
    assert {"README.md", "docs/camvid.md", "benchmarks/RESULTS.md", "benchmarks/NOTES.md"} <= set(texts)
    for folder, pattern in (
        ("minifcn", "*.py"),
        ("minifcn", "*.cu*"),
        ("benchmarks", "*.py"),
        ("benchmarks", "*.sh"),
        ("lessons", "*.ipynb"),
    ):
        texts.update({str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in (ROOT / folder).rglob(pattern)})
    texts.update({f"{name} --help": _help(main) for name, main in COMMANDS.items()})
    found = [f"{where}: {m.group(0)!r}" for where, text in texts.items() for m in HISTORY.finditer(text)]
    assert not found, found


def test_licence_version_and_the_command_list(capsys):
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("BSD 2-Clause License") and 'license="BSD-2-Clause"' in (ROOT / "setup.py").read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+", minifcn.__version__)
    for main in COMMANDS.values():
        assert cli.run(main, ["--version"]) == 0
        assert capsys.readouterr().out.strip() == f"minifcn {minifcn.__version__}"
    listed = subprocess.run([sys.executable, "-m", "minifcn"], capture_output=True, text=True, check=True, cwd=ROOT)
    for name in COMMANDS:
        assert f"python -m minifcn.{name}" in listed.stdout
