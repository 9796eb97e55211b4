"""The CUDA sources without a GPU: every .cu file compiles to PTX (nvcc), and the kernels,
compiled as plain C++ (g++) with one "thread" walking every element, compute what NumPy does."""

import ctypes
import glob
import os
import shutil
import subprocess

import numpy as np
import pytest

from minifcn.functional import col2im, conv_output_size, im2col

CUDA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minifcn", "cuda")
SOURCES = sorted(glob.glob(os.path.join(CUDA_DIR, "*.cu")))


def test_there_are_sources():
    assert any(path.endswith("im2col.cu") for path in SOURCES)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on this machine")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_compiles_to_ptx(source, arch, tmp_path):
    done = subprocess.run(["nvcc", "--ptx", f"-arch={arch}", "-o", str(tmp_path / "out.ptx"), source],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ptx = (tmp_path / "out.ptx").read_text()
    for kernel in ("f32", "f64"):
        assert f"_{kernel}(" in ptx  # both precisions are there, under their extern "C" names


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """im2col.cu compiled by g++ as a shared library, its kernels callable through ctypes."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on this machine")
    lib = tmp_path_factory.mktemp("host") / "kernels.so"
    done = subprocess.run(["g++", "-x", "c++", "-std=c++17", "-O1", "-shared", "-fPIC", "-DMINIFCN_HOST",
                           "-I", CUDA_DIR, "-o", str(lib), os.path.join(CUDA_DIR, "im2col.cu")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(str(lib))


def _launch(kernel, source, out, geometry):
    pointer = ctypes.POINTER(ctypes.c_double if source.dtype == np.float64 else ctypes.c_float)
    kernel(source.ctypes.data_as(pointer), out.ctypes.data_as(pointer), *(ctypes.c_int(v) for v in geometry))


CASES = [  # N, C, H, W, KH, KW, stride, padding, dilation
    (2, 3, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1)),
    (1, 2, 9, 8, 3, 2, (2, 3), (1, 0), (1, 1)),
    (2, 2, 10, 9, 3, 3, (1, 2), (2, 2), (2, 3)),
    (1, 1, 5, 5, 1, 1, (1, 1), (3, 3), (1, 1)),  # a padding wider than the kernel, as conv1_1's 100
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_host_im2col_and_col2im_match_numpy(host_kernels, case, dtype, rng):
    N, C, H, W, KH, KW, (sh, sw), (ph, pw), (dh, dw) = case
    OH, OW = conv_output_size(H, KH, sh, ph, dh), conv_output_size(W, KW, sw, pw, dw)
    geometry = (N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw)
    suffix = "f32" if dtype == np.float32 else "f64"
    x = rng.standard_normal((N, C, H, W)).astype(dtype)

    cols = np.full((C * KH * KW, N * OH * OW), np.nan, dtype)  # every entry must be written
    _launch(getattr(host_kernels, f"im2col_{suffix}"), x, cols, geometry)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    np.testing.assert_array_equal(cols, im2col(xpad, (KH, KW), (sh, sw), (dh, dw), (0, OH), OW))

    g = rng.standard_normal(cols.shape).astype(dtype)
    gx = np.full(x.shape, np.nan, dtype)
    _launch(getattr(host_kernels, f"col2im_{suffix}"), g, gx, geometry)
    gxpad = np.zeros(xpad.shape, dtype)
    col2im(g, gxpad, (KH, KW), (sh, sw), (dh, dw), (0, OH), OW)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gx, gxpad[:, :, ph : ph + H, pw : pw + W], rtol=tol, atol=tol)
    # col2im is im2col's adjoint: <im2col(x), g> = <x, col2im(g)>
    assert float((cols.astype(np.float64) * g).sum()) == pytest.approx(float((x.astype(np.float64) * gx).sum()), rel=1e-4)
