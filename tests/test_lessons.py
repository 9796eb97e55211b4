"""The lessons: every notebook in lessons/ runs top to bottom (its asserts are the lesson's claims),
and none is stored with outputs."""

import glob
import os

import pytest
from helpers import missing_tool

from minifcn.backend import cuda_available
from minifcn.cuda import host

LESSONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lessons")
LESSONS = sorted(glob.glob(os.path.join(LESSONS_DIR, "*.ipynb")))
SHARED_DATA = os.path.join(os.path.dirname(LESSONS_DIR), "..", "shared", "data")
# Lessons that read real files a user's clone lacks: the variable each reads, and where it looks without it.
# Without the files, a lesson whose data cells are tagged "needs-data" runs all its other cells, then the
# test skips, saying what did not run; a lesson that is about the data (11) is skipped whole.
CAMVID = (
    "CAMVID",
    [os.path.join(os.path.dirname(LESSONS_DIR), "data", "CamVid"), os.path.join(SHARED_DATA, "CamVid")],
)  # where `python -m minifcn.download camvid` puts it from the repository's root, then this project's copy
NEEDS = {"08_metrics.ipynb": CAMVID, "11_real_images_and_the_receptive_field.ipynb": CAMVID}

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


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=os.path.basename)
def test_runs_top_to_bottom(path, monkeypatch):
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    if os.path.basename(path).startswith("12_") and not (cuda_available() or host.available()):
        missing_tool("lesson 12 runs the CUDA kernels: it needs a GPU with CuPy, or g++ to build them for the CPU")
    missing = None
    if os.path.basename(path) in NEEDS:
        variable, places = NEEDS[os.path.basename(path)]
        folder = os.path.abspath(os.environ.get(variable) or next((p for p in places if os.path.isdir(p)), places[0]))
        monkeypatch.setenv(variable, folder)  # the lesson looks exactly where this test looked
        if not os.path.isdir(folder):
            missing = f"{folder} is not here (set {variable})"
            tagged = [c for c in notebook.cells if "needs-data" in c.metadata.get("tags", [])]
            if not tagged:
                pytest.skip(f"needs its data: {missing}")
            notebook.cells = [c for c in notebook.cells if c not in tagged]

    # The kernel imports minifcn from this checkout, installed or not.
    root = os.path.dirname(LESSONS_DIR)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))

    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": LESSONS_DIR}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error or failed assert
    if missing:
        pytest.skip(f"ran every cell but those on real data: {missing}")
