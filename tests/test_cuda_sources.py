"""The CUDA sources without a GPU: every .cu file compiles to PTX (nvcc), and the kernels,
compiled as plain C++ (g++) with one "thread" walking every element, compute what NumPy does."""

import ctypes
import glob
import os
import shutil
import subprocess

import numpy as np
import pytest

import minifcn as mf
from minifcn.functional import col2im, conv_output_size, im2col, pool_output_size
from minifcn.functional.loss import SoftmaxCrossEntropy
from minifcn.functional.pool import AvgPool2d, MaxPool2d

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
    for precision in ("f32", "f64"):
        assert f"_{precision}(" in ptx  # both precisions are there, under their extern "C" names


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Each .cu file compiled by g++ as a shared library: name -> ctypes library, kernels callable by name."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on this machine")
    folder = tmp_path_factory.mktemp("host")
    libraries = {}
    for source in SOURCES:
        name = os.path.basename(source)[: -len(".cu")]
        lib = folder / f"{name}.so"
        done = subprocess.run(["g++", "-x", "c++", "-std=c++17", "-O1", "-shared", "-fPIC", "-DMINIFCN_HOST",
                               "-I", CUDA_DIR, "-o", str(lib), source], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        libraries[name] = ctypes.CDLL(str(lib))
    return libraries


def _call(kernel, *args):
    """Call a host-compiled kernel: arrays become pointers, Python ints C ints (np.int64 a long long)."""
    converted = []
    for a in args:
        if isinstance(a, np.ndarray):
            converted.append(ctypes.c_void_p(a.ctypes.data))
        elif isinstance(a, np.int64):
            converted.append(ctypes.c_longlong(int(a)))
        elif isinstance(a, float):
            converted.append(a)
        else:
            converted.append(ctypes.c_int(a))
    kernel(*converted)


def _launch(kernel, source, out, geometry):
    _call(kernel, source, out, *geometry)


CASES = [  # N, C, H, W, KH, KW, stride, padding, dilation
    (2, 3, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1)),
    (1, 2, 9, 8, 3, 2, (2, 3), (1, 0), (1, 1)),
    (2, 2, 10, 9, 3, 3, (1, 2), (2, 2), (2, 3)),
    (1, 1, 5, 5, 1, 1, (1, 1), (3, 3), (1, 1)),  # a padding wider than the kernel, as conv1_1's 100
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_host_im2col_and_col2im_match_numpy(host, case, dtype, rng):
    host_kernels = host["im2col"]
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


POOL_CASES = [  # N, C, H, W, kernel, stride, padding, dilation, ceil_mode
    (2, 3, 7, 9, (2, 2), (2, 2), (0, 0), (1, 1), True),  # the FCNs' pooling, odd sizes: ceil windows overhang
    (1, 2, 8, 8, (3, 3), (2, 2), (1, 1), (1, 1), False),
    (1, 2, 9, 10, (3, 2), (2, 3), (1, 1), (2, 1), True),
    (2, 1, 6, 6, (3, 3), (1, 1), (1, 0), (1, 1), False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_host_pooling_matches_numpy(host, case, dtype, rng):
    N, C, H, W, (KH, KW), (sh, sw), (ph, pw), (dh, dw), ceil_mode = case
    OH = pool_output_size(H, KH, sh, ph, dh, ceil_mode)
    OW = pool_output_size(W, KW, sw, pw, dw, ceil_mode)
    suffix = "f32" if dtype == np.float32 else "f64"
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    x[0, 0, 1, :3] = x[0, 0, 1, 0]  # ties: the first tap must win
    gy = rng.standard_normal((N, C, OH, OW)).astype(dtype)
    lib = host["pool"]

    reference = MaxPool2d((KH, KW), (sh, sw), (ph, pw), (dh, dw), ceil_mode)
    y_ref = reference(mf.Tensor(x)).data
    y, argmax = np.full(y_ref.shape, np.nan, dtype), np.full(y_ref.shape, -1, np.int32)
    _call(getattr(lib, f"max_pool_forward_{suffix}"), x, y, argmax, N, C, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, reference.argmax)
    gx = np.full(x.shape, np.nan, dtype)
    _call(getattr(lib, f"max_pool_backward_{suffix}"), gy, argmax, gx, N, C, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw)
    np.testing.assert_allclose(gx, reference.backward(gy), rtol=1e-6, atol=1e-6)

    if (dh, dw) != (1, 1):
        return  # average pooling has no dilation
    reference = AvgPool2d((KH, KW), (sh, sw), (ph, pw), ceil_mode)
    y_ref = reference(mf.Tensor(x)).data
    y = np.full(y_ref.shape, np.nan, dtype)
    _call(getattr(lib, f"avg_pool_forward_{suffix}"), x, y, N, C, H, W, OH, OW, KH, KW, sh, sw, ph, pw)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    _call(getattr(lib, f"avg_pool_backward_{suffix}"), gy, gx, N, C, H, W, OH, OW, KH, KW, sh, sw, ph, pw)
    np.testing.assert_allclose(gx, reference.backward(gy), rtol=tol, atol=tol)


def test_host_max_pooling_propagates_nan(host):
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    y, argmax = np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), np.int32)
    _call(host["pool"].max_pool_forward_f64, x, y, argmax, 1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0, 1, 1)
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_host_softmax_loss_matches_numpy(host, dtype, reduction, rng):
    N, C, H, W = 2, 5, 4, 3
    scores = (rng.standard_normal((N, C, H, W)) * 4).astype(dtype)
    scores[0, :, 0, 0] += 800  # large scores: exp overflows unless the max is subtracted first
    labels = rng.integers(0, C, (N, H, W)).astype(np.int64)
    labels[1, 2] = 255  # an ignored row
    reference = SoftmaxCrossEntropy(labels, 255, reduction)
    expected = float(reference(mf.Tensor(scores)).data)
    P = H * W
    loss, counted = np.full((N, H, W), np.nan, dtype), np.full((N, H, W), np.nan, dtype)
    lib = host["softmax_loss"]
    _call(getattr(lib, f"softmax_loss_forward_{'f32' if dtype == np.float32 else 'f64'}"),
          scores, labels, loss, counted, N, C, np.int64(P), np.int64(255))  # fmt: skip
    assert counted.sum() == N * H * W - W and (loss[1, 2] == 0).all()
    total = loss.sum(dtype=np.float64) / (counted.sum() if reduction == "mean" else 1)
    assert total == pytest.approx(expected, rel=1e-5 if dtype == np.float32 else 1e-12)

    scale = 1.0 / counted.sum() if reduction == "mean" else 1.0
    grad = np.full(scores.shape, np.nan, dtype)
    kernel = getattr(lib, f"softmax_loss_backward_{'f32' if dtype == np.float32 else 'f64'}")
    scale_arg = ctypes.c_float(scale) if dtype == np.float32 else ctypes.c_double(scale)
    kernel(ctypes.c_void_p(scores.ctypes.data), ctypes.c_void_p(labels.ctypes.data), ctypes.c_void_p(grad.ctypes.data),
           ctypes.c_int(N), ctypes.c_int(C), ctypes.c_longlong(P), ctypes.c_longlong(255), scale_arg)  # fmt: skip
    tol = 1e-4 if dtype == np.float32 else 1e-12  # float32 differences of scores near 800 round at 6e-5
    np.testing.assert_allclose(grad, reference.backward(np.array(1.0, dtype)), rtol=tol, atol=tol)
