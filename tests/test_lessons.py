"""The lessons: every notebook in lessons/ is stored with its outputs (made by `python lessons/render.py`), runs
top to bottom (its asserts are the lesson's claims), and still prints what it shows (lessons/render.py's
``compare``)."""

import base64
import glob
import importlib.util
import os

import pytest
from helpers import missing_tool

from minifcn.backend import cuda_available
from minifcn.cuda import host

LESSONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lessons")
LESSONS = sorted(glob.glob(os.path.join(LESSONS_DIR, "[0-9][0-9]_*.ipynb")))
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
_spec = importlib.util.spec_from_file_location("render", os.path.join(LESSONS_DIR, "render.py"))
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)


def test_the_lessons_are_there():
    names = [os.path.basename(p)[:2] for p in LESSONS]
    assert names == sorted(set(names)) and names[0] == "01"


def test_the_comparison_of_printed_text():
    same = render.compare_text
    assert same("mean IU 0.212, 92 arrays", "mean IU 0.213, 92 arrays") is None  # a rounding flip in the last place
    assert "0.214" in same("mean IU 0.212", "mean IU 0.214")
    assert "now 6" in same("shape (1, 5, 7)", "shape (1, 6, 7)")  # integers exactly
    assert same("1.92e+07 and 7.7e-10", "1.93e+07 and 7.8e-10") is None
    assert "1.94e+07" in same("1.92e+07", "1.94e+07")
    assert (
        same("FCN-8s: 200 iterations in 28 s, 1.4x, 106 GFLOP/s", "FCN-8s: 200 iterations in 41 s, 2.0x, 90 GFLOP/s")
        is None
    )
    assert "FCN-16s" in same("FCN-8s: in 28 s", "FCN-16s: in 28 s")  # a name is not a time
    assert same("[0.9  0.43 0.  ]", "[0.9  0.43 0.  ]") is None and same("a  b", "a b") is None  # padding
    assert "now 'colour'" in same("shape", "colour")
    assert same("mean IU 0.246", "mean IU 0.269", numbers=False) is None  # words only, for a rounding cell


@pytest.mark.parametrize("path", LESSONS, ids=os.path.basename)
def test_stored_with_small_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    fix = f"run `python lessons/render.py {os.path.basename(path)[:2]}`"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"not stored as one run: {fix}"
    assert any("assert" in c.source for c in code)  # its claims are checked
    assert "widgets" not in notebook.metadata
    assert notebook.metadata.get("minifcn", {}).get("rounding"), f"no rounding fingerprint: {fix}"
    for i, cell in enumerate(notebook.cells):
        assert "execution" not in cell.metadata, f"cell {i} stores its timing: {fix}"
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"cell {i} is stored with an error: {fix}"
            data = output.get("data", {})
            assert not any("widget" in kind for kind in data), f"cell {i} stores a widget"
            if "image/png" in data:
                size = len(base64.b64decode(data["image/png"]))
                assert size <= render.MAX_IMAGE_BYTES, f"cell {i}: a {size // 1000} KB figure: {fix}"


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=os.path.basename)
def test_runs_and_shows_what_is_stored(path):
    stored = nbformat.read(path, as_version=4)
    notebook = nbformat.read(path, as_version=4)
    if os.path.basename(path).startswith("12_") and not (cuda_available() or host.available()):
        missing_tool("lesson 12 runs the CUDA kernels: it needs a GPU with CuPy, or g++ to build them for the CPU")
    missing, env = None, {}
    if os.path.basename(path) in NEEDS:
        variable, places = NEEDS[os.path.basename(path)]
        folder = os.path.abspath(os.environ.get(variable) or next((p for p in places if os.path.isdir(p)), places[0]))
        env[variable] = folder  # the lesson looks exactly where this test looked
        if not os.path.isdir(folder):
            missing = f"{folder} is not here (set {variable})"
            tagged = [c for c in notebook.cells if "needs-data" in c.metadata.get("tags", [])]
            if not tagged:
                pytest.skip(f"needs its data: {missing}")
            notebook.cells = [c for c in notebook.cells if c not in tagged]

    render.execute(notebook, env)  # raises CellExecutionError, with the cell and its traceback, on a failed assert
    # Where this machine rounds as the rendering one did, the numbers of the cells tagged rounding are compared too.
    same_rounding = render.rounding(env) == stored.metadata.get("minifcn", {}).get("rounding")
    problems = render.compare(stored, notebook, same_rounding)
    assert not problems, (
        f"{os.path.basename(path)} no longer shows what is stored; if the change is meant, run "
        f"`python lessons/render.py {os.path.basename(path)[:2]}`:\n" + "\n".join(problems)
    )
    if missing:
        pytest.skip(f"ran every cell but those on real data: {missing}")
