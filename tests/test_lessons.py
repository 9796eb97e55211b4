"""The lessons: every notebook in lessons/ runs top to bottom (its asserts are the lesson's claims),
and none is stored with outputs."""

import glob
import os

import pytest

LESSONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lessons")
LESSONS = sorted(glob.glob(os.path.join(LESSONS_DIR, "*.ipynb")))
# Lessons on real files, which a user's clone lacks (the lesson says where it looks): skipped without them.
CAMVID = os.path.join(os.path.dirname(LESSONS_DIR), "..", "shared", "data", "CamVid")
NEEDS = {"11_real_images_and_the_receptive_field.ipynb": CAMVID}

nbformat = pytest.importorskip("nbformat", reason="nbformat is part of the test extra: pip install -e '.[test]'")


def test_the_lessons_are_there():
    names = [os.path.basename(p)[:2] for p in LESSONS]
    assert names == sorted(set(names)) and names[0] == "01"


@pytest.mark.parametrize("path", LESSONS, ids=os.path.basename)
def test_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {i} has outputs: clear them"
    assert any("assert" in c.source for c in notebook.cells if c.cell_type == "code")  # its claims are checked


@pytest.mark.parametrize("path", LESSONS, ids=os.path.basename)
def test_runs_top_to_bottom(path, monkeypatch):
    from nbclient import NotebookClient

    needed = NEEDS.get(os.path.basename(path))
    if needed is not None and not os.path.isdir(needed):
        pytest.skip(f"needs {os.path.normpath(needed)}, which is not here")

    # The kernel imports minifcn from this checkout, installed or not.
    root = os.path.dirname(LESSONS_DIR)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": LESSONS_DIR}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error or failed assert
