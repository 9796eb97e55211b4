import os

# The suite runs in one process per core (pytest-xdist, pytest.ini's -n auto). Each gets its share of the cores
# for BLAS, one thread on a 2-core machine, set before NumPy loads OpenBLAS: the products of small layers hardly
# use a second thread, and two processes whose BLAS threads outnumber the cores wait on each other.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(_share))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minifcn.backend import cuda_available  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # The tests marked slow (the lessons, the largest gradchecks) go first. pytest.ini hands the tests to the
    # processes one at a time (--dist load --maxschedchunk 1), so each long one starts early, beside the
    # others, and the short ones fill in after: no process is left running a long test alone at the end.
    items.sort(key=lambda item: "slow" not in item.keywords)  # stable: otherwise in file order
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device; none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def load_benchmark():
    """A function that imports ``benchmarks/<name>.py`` by its path (benchmarks/ is scripts, not a package), for the
    tests of the pieces that a benchmark's figures rest on."""
    import importlib.util

    def load(name: str):
        path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", f"{name}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
