"""Run the lessons and store their outputs in the notebooks, so that a reader sees every figure and printed result
on the repository's page without running anything.

    python lessons/render.py            # every lesson
    python lessons/render.py 06 07      # the lessons whose names start so

Each lesson runs top to bottom in a fresh kernel, in the lessons/ folder, with one BLAS thread (as the test suite
runs it on two cores), and the notebook is written back with its outputs, and with the fingerprint of how this
machine rounds (``rounding``). The figures are stored as PNGs of at most 256 colours, a few tens of KB each.

Lessons 08 and 11 read CamVid: ``python -m minifcn.download camvid`` (into data/CamVid), or ``CAMVID=DIR``. This
command refuses to store a lesson with a part left out.

tests/test_lessons.py runs every lesson again and compares what it prints with what is stored here
(``compare``): a lesson whose stored output is not what the code now gives fails the suite until it is rendered
again. How the comparison treats numbers is in ``compare``'s docstring and in docs/tests.md.
"""

import base64
import glob
import io
import os
import re
import subprocess
import sys
import time

LESSONS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(LESSONS_DIR)
# Cells whose output depends on the machine (timings, the device found) carry the tag "machine": only the kinds of
# their outputs are compared. Cells whose numbers depend on how the machine rounds (the result of a training run, a
# difference at the level of rounding) carry "rounding": a machine that rounds float32 differently (another BLAS
# kernel, another NumPy) trains to other numbers, so there only their words are compared; on a machine that rounds
# as the one that rendered them, their numbers are compared as any other's.
MACHINE, ROUNDING_TAG = "machine", "rounding"
MAX_IMAGE_BYTES = 100_000
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
# A number followed by one of these units is a time or a speed: it is never compared.
TIMED = re.compile(
    r"(?<![\w.-])(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?=\s*(?:s|ms|us|µs|min|x)\b|\s*(?:[GMk] ?)?[A-Za-z-]*/s\b)"
)


def environment(extra: dict | None = None) -> dict:
    """The variables a lesson's kernel runs with: one BLAS thread, minifcn from this checkout."""
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return {**env, **(extra or {})}


ROUNDING = """
import hashlib, numpy as np
rng = np.random.default_rng(0)
a, b = rng.standard_normal((257, 300)).astype(np.float32), rng.standard_normal((300, 129)).astype(np.float32)
parts = [a @ b, a.sum(axis=1), np.exp(a), np.log1p(np.abs(a)), np.sqrt(np.abs(a)), np.tanh(a)]
print(hashlib.sha256(np.__version__.encode() + b"".join(p.tobytes() for p in parts)).hexdigest()[:16])
"""


def rounding(env: dict | None = None) -> str:
    """A fingerprint of how NumPy and its BLAS round float32 here (a product, sums, exp, log, sqrt, tanh, and
    NumPy's version), in the environment a lesson's kernel gets. Two machines with the same fingerprint train a
    lesson's nets to the same bits; the BLAS kernel chosen for the CPU (AVX2, AVX-512) changes it."""
    out = subprocess.run([sys.executable, "-c", ROUNDING], env={**os.environ, **environment(env)}, capture_output=True)
    return out.stdout.decode().strip()


def execute(notebook, env: dict | None = None):
    """Run ``notebook`` (an nbformat node) top to bottom in a fresh kernel in lessons/, in place. Raises nbclient's
    CellExecutionError, with the cell and its traceback, on any error or failed assert."""
    from nbclient import NotebookClient

    saved = {k: os.environ.get(k) for k in environment(env)}
    os.environ.update(environment(env))  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            notebook, timeout=900, kernel_name="python3", record_timing=False,
            resources={"metadata": {"path": LESSONS_DIR}},
        )  # fmt: skip
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return notebook


def shrink_images(notebook) -> None:
    """Store every PNG output with at most 256 colours (optimised), in place."""
    from PIL import Image

    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png is None:
                continue
            image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
            buffer = io.BytesIO()
            image.quantize(256, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
            output["data"]["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")


def summarise(cell) -> list[tuple[str, str]]:
    """A code cell's outputs as (kind, text): all its printed text as one 'text' entry (a kernel may split it into
    several stream outputs differently from run to run), each result's text, and one 'figure' per image."""
    printed, results = [], []
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            printed.append(output["text"])
        elif kind == "error":
            results.append(("error", f"{output['ename']}: {output['evalue']}"))
        elif "image/png" in output.get("data", {}) or "image/jpeg" in output.get("data", {}):
            results.append(("figure", ""))
        elif "text/plain" in output.get("data", {}):
            results.append(("result", output["data"]["text/plain"]))
    return ([("text", "".join(printed))] if printed else []) + results


def _numbers_agree(stored: str, fresh: str) -> bool:
    """Integers (counts, shapes) exactly; a decimal to one unit in its last printed place, a rounding flip."""
    mantissa, _, exponent = stored.lower().partition("e")
    if "." not in mantissa and not exponent:
        return stored.lstrip("+") == fresh.lstrip("+")
    decimals = mantissa.partition(".")[2]
    last_place = 10.0 ** -len(decimals) * 10.0 ** int(exponent or 0)
    return abs(float(stored) - float(fresh)) <= 1.01 * last_place


def _words(text: str) -> list[str]:
    """The text between the numbers, without spaces (a table's or an array's padding follows its numbers' widths)."""
    return ["".join(part.split()) for part in NUMBER.split(text)]


def compare_text(stored: str, fresh: str, numbers: bool = True) -> str | None:
    """None when ``fresh`` says what ``stored`` says, else the first difference, in words.

    The words must be equal, spaces aside. Times and speeds (a number followed by s, ms, us, min, x or a rate per
    second) are not compared. With ``numbers``, every other integer must be equal, and every decimal must agree to
    one unit in its last printed place."""
    stored, fresh = TIMED.sub("<time>", stored), TIMED.sub("<time>", fresh)
    if _words(stored) != _words(fresh):
        for s_line, f_line in zip(stored.splitlines() + ["(end)"], fresh.splitlines() + ["(end)"]):
            if _words(s_line) != _words(f_line):
                return f"stored {s_line.strip()!r}, now {f_line.strip()!r}"
    for s, f in zip(NUMBER.findall(stored), NUMBER.findall(fresh)) if numbers else ():
        if not _numbers_agree(s, f):
            line = next(line for line in fresh.splitlines() if f in line)
            return f"stored {s}, now {f} (in {line.strip()!r})"
    return None


def compare(stored_notebook, fresh_notebook, same_rounding: bool = True) -> list[str]:
    """Every difference between the stored outputs and a fresh run's, by cell (matched by id), in words.

    Cells tagged "machine": only the kinds of their outputs (text, figures). Other cells: the text, each number to
    one unit in its last printed place; but in cells tagged "rounding", only the words unless ``same_rounding`` (the
    fresh run rounded as the stored one did). Figures are compared by count only: a figure may move by pixels, the
    numbers it shows are asserted in the cell that draws it."""
    stored = {c.id: c for c in stored_notebook.cells if c.cell_type == "code"}
    problems = []
    for i, cell in enumerate(fresh_notebook.cells):
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        where = f"cell {i} ({cell.source.splitlines()[0][:50]!r} ...)" if cell.source else f"cell {i}"
        if cell.id not in stored:
            problems.append(f"{where}: not in the stored notebook")
            continue
        old, new = summarise(stored[cell.id]), summarise(cell)
        if [k for k, _ in old] != [k for k, _ in new]:
            problems.append(f"{where}: stored outputs {[k for k, _ in old]}, now {[k for k, _ in new]}")
            continue
        if MACHINE in tags:
            continue
        for (kind, s), (_, f) in zip(old, new):
            numbers = same_rounding or ROUNDING_TAG not in tags
            if kind != "figure" and (difference := compare_text(s, f, numbers)):
                problems.append(f"{where}: {difference}")
    return problems


def data_for(name: str) -> dict:
    """The environment lesson ``name`` needs for its real data (CamVid for 08 and 11), or {} for the others."""
    if not name.startswith(("08_", "11_")):
        return {}
    folder = os.path.abspath(os.environ.get("CAMVID") or os.path.join(ROOT, "data", "CamVid"))
    if not os.path.isdir(folder):
        raise SystemExit(
            f"render: error: {name} needs CamVid, and {folder} is not there: "
            "run `python -m minifcn.download camvid` from the repository's root, or set CAMVID"
        )
    return {"CAMVID": folder}


def render(path: str) -> None:
    import nbformat

    name = os.path.basename(path)
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    execute(notebook, data_for(name))
    shrink_images(notebook)
    notebook.metadata.pop("widgets", None)
    notebook.metadata["minifcn"] = {"rounding": rounding()}
    nbformat.write(notebook, path)
    largest = max((len(o["data"]["image/png"]) * 3 // 4 for c in notebook.cells for o in c.get("outputs", [])
                   if "image/png" in o.get("data", {})), default=0)  # fmt: skip
    seconds, size = time.perf_counter() - start, os.path.getsize(path) // 1000
    print(f"{name}: {seconds:.0f} s, {size} KB, largest figure {largest // 1000} KB")


def main(argv: list[str]) -> None:
    paths = sorted(glob.glob(os.path.join(LESSONS_DIR, "[0-9][0-9]_*.ipynb")))
    if argv:
        paths = [p for p in paths if os.path.basename(p).startswith(tuple(argv))]
        if not paths:
            raise SystemExit(f"render: error: no lesson starts with {' or '.join(argv)}")
    for path in paths:
        render(path)


if __name__ == "__main__":
    main(sys.argv[1:])
