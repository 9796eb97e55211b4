"""The CUDA code without a GPU.

- Every .cu file, as the launcher hands it to the compiler, compiles to PTX (nvcc) and,
  where libnvrtc is found, with NVRTC as CuPy compiles it.
- The launcher's table of kernel signatures matches the C declarations, parameter by parameter.
- The kernels, compiled as plain C++ (g++; minifcn.cuda.host runs each block on real
  threads) and launched through minifcn.cuda's own Python code, compute what the NumPy ops compute: the kernels
  one by one, and whole ops (forward and backward) with the GPU branch taken on the host.
- The launcher refuses bad arguments with errors that name the kernel and the argument.
"""

import ctypes
import ctypes.util
import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from device_cases import CONV_CASES, POOL_CASES
from helpers import missing_tool
from reference_loops import avg_pool2d_loop, conv2d_loop, conv_transpose2d_loop, max_pool2d_loop

import minifcn as mf
import minifcn.functional as F
from minifcn.cuda import host, kernels, launch
from minifcn.functional import conv_output_size, im2col, pool_output_size
from minifcn.functional.loss import SoftmaxCrossEntropy
from minifcn.functional.pool import AvgPool2d, MaxPool2d
from minifcn.models import FCN8s

FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(launch.CUDA_DIR, "*.cu")))
DTYPES = [np.float32, np.float64]


def test_every_file_and_kernel_is_known():
    assert {"batch_norm.cu", "im2col.cu", "optim.cu", "pool.cu", "reduce.cu", "softmax_loss.cu"} <= set(FILES)
    assert {filename for filename, _ in launch.SIGNATURES.values()} == set(FILES)


def test_source_pastes_common_header():
    text = launch.source("pool.cu")
    device_part = text[: text.index("#ifdef MINIFCN_HOST")] + text[text.index("#else") :]
    assert "#include" not in device_part  # only the host branch includes anything: NVRTC has no headers
    assert "first_index()" in text and "max_pool_forward_f32" in text


# ---------------------------------------------------------------------------
# Compilers


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("filename", FILES)
def test_compiles_to_ptx(filename, arch, tmp_path):
    if shutil.which("nvcc") is None:
        missing_tool("nvcc is not on this machine")
    (tmp_path / filename).write_text(launch.source(filename))
    done = subprocess.run(
        ["nvcc", "--ptx", f"-arch={arch}", "-o", str(tmp_path / "out.ptx"), str(tmp_path / filename)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ptx = (tmp_path / "out.ptx").read_text()
    for kernel, (source_file, _) in launch.SIGNATURES.items():
        if source_file == filename:
            for suffix in ("f32", "f64"):
                assert f".entry {kernel}_{suffix}(" in ptx  # under its extern "C" name, in both precisions


def _find_nvrtc():
    """libnvrtc from $MINIFCN_NVRTC, the system, or a pip wheel (nvidia-cuda-nvrtc); None when absent."""
    candidates = [os.environ.get("MINIFCN_NVRTC"), ctypes.util.find_library("nvrtc")]
    for folder in sys.path:
        candidates += sorted(glob.glob(os.path.join(folder, "nvidia", "*", "lib", "libnvrtc.so*")))
    for path in candidates:
        if path and "builtins" not in path and ".alt." not in path:
            try:
                # NVRTC opens its builtins library by name at compile time: load it first from beside it.
                for builtins in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so*")):
                    if ".alt." not in builtins:
                        ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


@pytest.mark.parametrize("filename", FILES)
def test_compiles_with_nvrtc(filename):
    """CuPy's RawModule compiles with NVRTC, which has no standard headers (no INFINITY, no <cmath>)."""
    nvrtc = _find_nvrtc()
    if nvrtc is None:
        missing_tool("libnvrtc not found (set MINIFCN_NVRTC, or pip install nvidia-cuda-nvrtc-cu12)")
    program = ctypes.c_void_p()
    code = launch.source(filename).encode()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), code, filename.encode(), 0, None, None) == 0
    options = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_80")
    status = nvrtc.nvrtcCompileProgram(program, 1, options)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    assert status == 0, log.value.decode()


def _preprocess(filename):
    done = subprocess.run(
        ["g++", "-E", "-P", "-DMINIFCN_HOST", "-x", "c++", "-"],
        input=launch.source(filename),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_signatures_match_the_c_declarations():
    """launch.SIGNATURES is how Python packs each argument: it must say what the C code reads."""
    if shutil.which("g++") is None:
        missing_tool("g++ is not on this machine")
    declared = {}
    for filename in FILES:
        text = re.sub(r"\s+", " ", _preprocess(filename))
        for name, suffix, params in re.findall(r'extern "C" void (\w+)_(f32|f64) ?\(([^)]*)\)', text):
            declared[(name, suffix)] = (filename, tuple(p.strip().replace(" *", "*") for p in params.split(",")))
    assert sorted({name for name, _ in declared}) == sorted(launch.SIGNATURES)
    for (name, suffix), signature in declared.items():
        scalar = "float" if suffix == "f32" else "double"  # T in SIGNATURES; a "double*" stays double in both
        filename, params = launch.SIGNATURES[name]
        assert signature == (filename, tuple(re.sub(r"\bT\b", scalar, p) for p in params)), name


# ---------------------------------------------------------------------------
# The kernels on the host, launched through minifcn.cuda


@pytest.fixture(scope="module")
def host_libraries():
    """Each .cu file, as launch.source gives it, compiled by g++ for the CPU (minifcn.cuda.host)."""
    if not host.available():
        missing_tool("g++ is not on this machine")
    return host.build()


def test_host_builds_are_kept_and_a_changed_source_builds_anew(host_libraries, monkeypatch, tmp_path):
    # A later process loads the kept libraries (here: a fresh table, and a g++ that must not compile); a
    # source that changed is compiled under a new name, and the others are not touched. In a folder of this
    # test's own, with a copy of what this process built.
    for library in host_libraries.values():
        shutil.copy2(library._name, tmp_path)
    kept = {f: os.path.getmtime(tmp_path / f) for f in os.listdir(tmp_path)}
    monkeypatch.setattr(host, "_LIBRARIES", {})
    popen = subprocess.Popen

    def no_compiler(args, *rest, **kwargs):
        if "-o" in args:
            raise AssertionError("compiled although every library was kept")
        return popen(args, *rest, **kwargs)  # asking g++ its version is fine

    monkeypatch.setattr(host.subprocess, "Popen", no_compiler)
    assert sorted(host.build(str(tmp_path))) == sorted(host_libraries)
    monkeypatch.undo()

    monkeypatch.setattr(host, "_LIBRARIES", {})
    original = host.host_source
    monkeypatch.setattr(host, "host_source", lambda f: original(f) + ("// changed\n" if f == "optim.cu" else ""))
    host.build(str(tmp_path))
    now = {f: os.path.getmtime(tmp_path / f) for f in os.listdir(tmp_path)}
    new = [f for f in now if f not in kept]
    assert len(new) == 1 and new[0].startswith("optim-") and new[0].endswith(".so")  # no .part left either
    assert all(now[f] == t for f, t in kept.items())

    # A source g++ refuses: an error naming the file and g++'s complaint, and nothing half-written left behind.
    monkeypatch.setattr(host, "_LIBRARIES", {})
    monkeypatch.setattr(host, "host_source", lambda f: original(f) + ("this is not C++;\n" if f == "pool.cu" else ""))
    with pytest.raises(RuntimeError, match=r"minifcn/cuda/pool.cu did not compile for the host:\n.*error"):
        host.build(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(now)


@pytest.fixture
def on_host(host_libraries):
    """Take every op's GPU branch with NumPy arrays, running the host-compiled kernels.

    Only the three calls that need a real GPU are replaced (compiling a kernel, and
    asking which device an array and the current context are on) and kernels.on_gpu;
    everything else (the ops' GPU branches, kernels.py, launch's checks and
    conversions) runs as it would on a GPU. Yields the names of the kernels launched.
    """
    with host.kernels_on_host() as launched:
        yield launched


def _tol(dtype):
    # float32: what the host build's fused multiply-adds and another order of the products' sums leave (3e-7
    # fails on the convolutions, whose sums BLAS orders differently from the direct loops)
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_and_col2im_kernels_match_numpy(on_host, case, dtype, rng):
    N, C, H, W, KH, KW, stride, padding, dilation = case
    OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
    geometry = ((KH, KW), stride, padding, dilation)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    whole = im2col(x, (KH, KW), stride, padding, dilation).reshape(C * KH * KW, N, OH, OW)  # the reference
    for rows in [(0, OH), (1, OH - 1), (OH - 1, OH)]:  # all rows, and bands
        if rows[1] <= rows[0]:
            continue
        cols = kernels.im2col(x, *geometry, rows, OW)
        np.testing.assert_array_equal(cols, whole[:, :, rows[0] : rows[1]].reshape(C * KH * KW, -1))
        g = rng.standard_normal(cols.shape).astype(dtype)
        gx = np.zeros(x.shape, dtype)
        kernels.col2im(g, gx, *geometry, rows, OW)
        # col2im is im2col's adjoint: <im2col(x), g> = <x, col2im(g)>, band by band. In float64 both sides
        # are the same products summed in another order; in float32 gx itself is rounded once per add.
        assert float((cols.astype(np.float64) * g).sum()) == pytest.approx(
            float((x * gx).sum(dtype=np.float64)), rel=1e-12 if dtype == np.float64 else 1e-5
        )
    assert on_host.count("im2col_" + ("f32" if dtype == np.float32 else "f64")) >= 1


def test_col2im_adds_band_after_band(on_host, rng):
    """Two bands added into one buffer equal the whole layer at once."""
    x_shape, geometry, OH, OW = (1, 2, 9, 8), ((3, 3), (2, 2), (1, 1), (1, 1)), 5, 4
    g = rng.standard_normal((2 * 9, OH * OW))
    whole = np.zeros(x_shape)
    kernels.col2im(g, whole, *geometry, (0, OH), OW)
    banded = np.zeros(x_shape)
    g_rows = g.reshape(2 * 9, OH, OW)
    kernels.col2im(np.ascontiguousarray(g_rows[:, :2].reshape(18, -1)), banded, *geometry, (0, 2), OW)
    kernels.col2im(np.ascontiguousarray(g_rows[:, 2:].reshape(18, -1)), banded, *geometry, (2, OH), OW)
    np.testing.assert_allclose(banded, whole, rtol=1e-13, atol=1e-13)
    assert np.abs(whole).sum() > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_kernels_match_numpy(on_host, case, dtype, rng):
    N, C, H, W, kernel, stride, padding, dilation, ceil_mode = case
    out_hw = tuple(
        pool_output_size(s, k, st, p, d, ceil_mode) for s, k, st, p, d in zip((H, W), kernel, stride, padding, dilation)
    )
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    x[0, 0, 1, :3] = x[0, 0, 1, 0]  # ties: the first tap must win
    gy = rng.standard_normal((N, C) + out_hw).astype(dtype)

    reference = MaxPool2d(kernel, stride, padding, dilation, ceil_mode)
    y_ref = _numpy_branch(lambda: reference.forward(x))
    gx_ref = _numpy_branch(lambda: reference.backward(gy))
    y, argmax = kernels.max_pool_forward(x, kernel, stride, padding, dilation, out_hw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, reference.argmax)
    gx = kernels.max_pool_backward(gy, argmax, x.shape, kernel, stride, padding, dilation)
    np.testing.assert_allclose(gx, gx_ref, **_tol(dtype))

    if dilation != (1, 1):
        return  # average pooling has no dilation
    reference = AvgPool2d(kernel, stride, padding, ceil_mode)
    y_ref = _numpy_branch(lambda: reference.forward(x))
    gx_ref = _numpy_branch(lambda: reference.backward(gy))
    np.testing.assert_allclose(kernels.avg_pool_forward(x, kernel, stride, padding, out_hw), y_ref, **_tol(dtype))
    np.testing.assert_allclose(kernels.avg_pool_backward(gy, x.shape, kernel, stride, padding), gx_ref, **_tol(dtype))


def _numpy_branch(compute):
    """Run ``compute`` with the ops' NumPy branch, inside a test that otherwise takes the GPU branch."""
    saved = kernels.on_gpu
    kernels.on_gpu = lambda *arrays: False
    try:
        return compute()
    finally:
        kernels.on_gpu = saved


def test_max_pool_kernel_propagates_nan(on_host):
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    y, argmax = kernels.max_pool_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), (1, 1))
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_loss_kernels_match_numpy(on_host, dtype, reduction, weighted, rng):
    N, C, H, W = 2, 5, 4, 3
    scores = (rng.standard_normal((N, C, H, W)) * 4).astype(dtype)
    scores[0, :, 0, 0] += 800  # large scores: exp overflows unless the max is subtracted first
    labels = rng.integers(0, C, (N, H, W)).astype(np.uint8)  # any integer type; the launcher makes int64
    labels[1, 2] = 255  # an ignored row
    weight = rng.uniform(0.2, 3.0, C).astype(dtype) if weighted else np.ones(C, dtype)
    reference = SoftmaxCrossEntropy(labels, 255, reduction, weight if weighted else None)
    expected = float(_numpy_branch(lambda: reference.forward(scores)))
    loss, counted = kernels.softmax_loss_forward(scores, labels, weight, 255)
    np.testing.assert_allclose(counted.sum(), weight[labels[labels != 255]].sum(), rtol=1e-6)
    assert (loss[1, 2] == 0).all() and (counted[1, 2] == 0).all()
    total = loss.sum(dtype=np.float64) / (counted.sum(dtype=np.float64) if reduction == "mean" else 1)
    assert total == pytest.approx(expected, rel=1e-5 if dtype == np.float32 else 1e-12)

    scale = np.array([1.0 / counted.sum() if reduction == "mean" else 1.0], dtype)  # read by the kernel from memory
    grad = kernels.softmax_loss_backward(scores, labels, weight, 255, scale)
    tol = 1e-4 if dtype == np.float32 else 1e-12  # float32 differences of scores near 800 round at 6e-5
    expected_grad = _numpy_branch(lambda: reference.backward(np.array(1.0, dtype)))
    np.testing.assert_allclose(grad, expected_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 40, 33), (3, 600, 2, 2), (2, 2, 1, 1)])
def test_channel_sums_kernel_is_a_float64_sum(on_host, shape, dtype, rng):
    """Per channel, the sum of a and of a*b over n and every pixel, as a float64 loop over the channel computes."""
    a = (rng.standard_normal(shape) + 3).astype(dtype)
    b = rng.standard_normal(shape).astype(dtype)
    sums = kernels.channel_sums(a, b)
    assert sums.shape == (2, shape[1]) and sums.dtype == np.float64
    for c in range(shape[1]):
        a_c, b_c = a[:, c].astype(np.float64).ravel(), b[:, c].astype(np.float64).ravel()
        assert sums[0, c] == pytest.approx(np.sum(a_c), rel=1e-13, abs=1e-13)
        assert sums[1, c] == pytest.approx(np.dot(a_c, b_c), rel=1e-13, abs=1e-12)
    assert "channel_sums_" + ("f32" if dtype == np.float32 else "f64") in on_host


def test_channel_sums_slices_cover_every_pixel_once(on_host, monkeypatch):
    """However each channel is cut into slices (one block each), every pixel is counted exactly once."""
    a = np.ones((2, 3, 50, 41), np.float32)
    for blocks in (1, 3, 7, 10_000):
        monkeypatch.setattr(kernels, "SUM_BLOCKS", blocks)
        np.testing.assert_array_equal(kernels.channel_sums(a, a), np.full((2, 3), 2 * 50 * 41.0))


# ---------------------------------------------------------------------------
# Whole ops, forward and backward, through their GPU branch (on the host)


def _forward_backward(op, inputs, gy_seed=1):
    """Outputs and input gradients of ``op`` for a fixed random output gradient."""
    tensors = [mf.Tensor(a.copy(), requires_grad=True) for a in inputs]
    y = op(*tensors)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(y.dtype)
    (y * mf.Tensor(gy)).sum().backward() if y.ndim else y.backward()
    return y.data, [t.grad for t in tensors]


def _compare_branches(op, inputs, dtype):
    """The op's GPU branch (host kernels) against its NumPy branch: outputs and every gradient."""
    y_gpu, grads_gpu = _forward_backward(op, inputs)
    y_cpu, grads_cpu = _numpy_branch(lambda: _forward_backward(op, inputs))
    for a_gpu, a_cpu in zip([y_gpu, *grads_gpu], [y_cpu, *grads_cpu]):
        tol = _tol(dtype)
        if dtype == np.float32:  # a float32 sum is off by a few roundings of its largest terms, not of its own size:
            # the input gradient of FCN-8s's 16x16 upsampling by 8 is 2.0e-5 from float64 on values up to 74, either
            # way NumPy orders the sums (2.7e-7 of the largest); so the absolute part scales with the array's largest
            tol["atol"] *= max(1.0, float(np.abs(a_cpu).max()))
        np.testing.assert_allclose(a_gpu, a_cpu, **tol)
    return y_gpu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gpu_branch(on_host, case, dtype, rng):
    N, C, H, W, KH, KW, stride, padding, dilation = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((4, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = _compare_branches(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation), [x, w, b], dtype)
    np.testing.assert_allclose(y, conv2d_loop(x, w, b, stride, padding, dilation), **_tol(dtype))
    assert any(name.startswith("im2col") for name in on_host)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride, padding, kernel", [(2, 1, 4), (3, 0, 3), (1, 1, 3), (8, 4, 16)])
def test_conv_transpose2d_gpu_branch(on_host, stride, padding, kernel, dtype, rng):
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    w = rng.standard_normal((3, 2, kernel, kernel)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    y = _compare_branches(lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding), [x, w, b], dtype)
    np.testing.assert_allclose(y, conv_transpose2d_loop(x, w, b, (stride,) * 2, (padding,) * 2, (1, 1)), **_tol(dtype))
    # The forward pass alone launches the col2im kernel (the GPU's one route for a transposed convolution).
    # Were it computed by NumPy, both branches above would have run the same code.
    on_host.clear()
    F.conv_transpose2d(x, w, b, stride, padding)
    assert "col2im" + ("_f32" if dtype == np.float32 else "_f64") in on_host, on_host


def test_conv2d_gpu_branch_in_bands(on_host, monkeypatch, rng):
    """A layer whose columns exceed the budget is done band by band, forward and backward."""
    from minifcn.functional import geometry

    monkeypatch.setattr(geometry, "IM2COL_BUDGET_BYTES", 2000)
    x = rng.standard_normal((2, 3, 11, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    _compare_branches(lambda x, w: F.conv2d(x, w, None, 2, 1), [x, w], np.float64)
    _compare_branches(
        lambda x, w: F.conv_transpose2d(x, w, None, 2, 1), [x, rng.standard_normal((3, 2, 4, 4))], np.float64
    )
    assert on_host.count("im2col_f64") > 4 and on_host.count("col2im_f64") > 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_gpu_branch(on_host, case, dtype, rng):
    N, C, H, W, kernel, stride, padding, dilation, ceil_mode = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    y = _compare_branches(lambda x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode), [x], dtype)
    np.testing.assert_array_equal(y, max_pool2d_loop(x, kernel, stride, padding, dilation, ceil_mode))
    suffix = "_f32" if dtype == np.float32 else "_f64"
    assert {"max_pool_forward" + suffix, "max_pool_backward" + suffix} <= set(on_host), on_host
    if dilation == (1, 1):
        on_host.clear()
        y = _compare_branches(lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode), [x], dtype)
        np.testing.assert_allclose(y, avg_pool2d_loop(x, kernel, stride, padding, ceil_mode), **_tol(dtype))
        assert {"avg_pool_forward" + suffix, "avg_pool_backward" + suffix} <= set(on_host), on_host


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_cross_entropy_gpu_branch(on_host, reduction, dtype, rng):
    scores = rng.standard_normal((2, 4, 3, 5)).astype(dtype)
    labels = rng.integers(0, 4, (2, 3, 5))
    labels[0, 1] = 255
    _compare_branches(lambda s: F.softmax_cross_entropy(s, labels, 255, reduction) * 3.0, [scores], dtype)
    assert "softmax_loss_backward_" + ("f32" if dtype == np.float32 else "f64") in on_host


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
def test_optimiser_gpu_branch(on_host, optimiser, dtype):
    """Three steps of SGD or Adam through cuda/optim.cu: the weights and state of the NumPy update."""
    from minifcn.nn import Parameter
    from minifcn.optim import SGD, Adam

    def three_steps():
        rng = np.random.default_rng(3)
        shapes, mults = [(4, 3, 3, 3), (4,), (5, 4, 1, 1), (5,)], [(1, 1), (2, 0), (1, 1), (2, 0)]
        params = [
            Parameter(rng.standard_normal(s).astype(dtype), lr_mult=lm, decay_mult=dm)
            for s, (lm, dm) in zip(shapes, mults)
        ]
        if optimiser == "sgd":
            opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
        else:
            opt = Adam(params, lr=0.01, weight_decay=0.01)
        for _ in range(3):
            for p in params:
                p.grad = rng.standard_normal(p.shape).astype(dtype)
            opt.step()
        return [p.data.copy() for p in params], opt.state_dict()

    (weights_gpu, state_gpu), (weights_cpu, state_cpu) = three_steps(), _numpy_branch(three_steps)
    arrays = [(f"weight {i}", a, b) for i, (a, b) in enumerate(zip(weights_gpu, weights_cpu))]
    arrays += [(key, state_gpu[key], state_cpu[key]) for key in state_cpu if np.asarray(state_cpu[key]).size]
    # The kernel fuses multiply-adds (as NVRTC does), NumPy does not: they differ by rounding, a few units in
    # the last place of each array's largest value (m and v cancel and shrink, so not of every element).
    for name, gpu, cpu in arrays:
        gpu, cpu = np.asarray(gpu), np.asarray(cpu)
        if cpu.dtype != np.dtype(dtype):  # the step count
            np.testing.assert_array_equal(gpu, cpu, err_msg=name)
            continue
        ulps = np.abs(gpu - cpu).max() / np.spacing(np.abs(cpu).max())
        assert ulps <= 2, f"{name}: {ulps} units in the last place"
    suffix = "f32" if dtype == np.float32 else "f64"
    assert on_host.count(f"{optimiser}_update_{suffix}") == 3 * 2  # one launch per step for each of the two kinds


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gpu_branch(on_host, training, rng):
    """Batch norm through its kernels (sums, statistics, forward, backward): the NumPy branch's numbers."""
    from minifcn.functional.norm import BatchNorm2d

    x = (rng.standard_normal((2, 3, 9, 11)) * 2 + 1).astype(np.float64)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    gy = rng.standard_normal(x.shape)
    results = []
    for branch in (lambda f: f(), _numpy_branch):
        running = (np.zeros(3), np.ones(3))
        op = BatchNorm2d(*running, training, 0.1, 1e-5)
        y = branch(lambda: op.forward(x, gamma, beta))
        results.append((y, *branch(lambda: op.backward(gy)), *running))
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    expected = {"channel_sums_f64", "batch_norm_forward_f64", "batch_norm_backward_f64"}
    assert expected | ({"batch_norm_statistics_f64"} if training else set()) <= set(on_host)


def test_softmax_cross_entropy_gpu_branch_all_ignored(on_host):
    scores = np.ones((1, 3, 2, 2))
    loss = F.softmax_cross_entropy(mf.Tensor(scores, requires_grad=True), np.full((1, 2, 2), 255))
    assert float(loss.data) == 0.0  # the mean of no pixels is 0, not NaN, on both branches


@pytest.mark.parametrize("backbone", ["tiny", "tiny-bn"])
def test_tiny_fcn8s_gpu_branch(on_host, backbone, rng, monkeypatch):
    """A whole tiny FCN-8s, forward, loss and backward, through the kernels: NumPy's numbers, in float64."""
    # Each block of a host launch is 64 real threads crossing block_sum's barriers: cut each channel into
    # fewer slices than a GPU wants (any number gives the same sums; the slicing has its own test).
    monkeypatch.setattr(kernels, "SUM_BLOCKS", 8)
    mf.manual_seed(0)
    model = FCN8s(n_class=3, backbone=backbone, dtype=np.float64)
    model.train()  # batch statistics through channel_sums; dropout off so that both branches see one network
    for name, m in model.named_modules():
        if hasattr(m, "p"):
            m.p = 0.0
    for name, p in model.named_parameters():
        if name.startswith("score"):
            p.data = rng.standard_normal(p.shape) * 0.1
    image = rng.standard_normal((2, 3, 40, 36))
    labels = rng.integers(0, 3, (2, 40, 36))
    labels[1, :5] = 255

    def loss_and_grads():
        model.zero_grad()
        loss = F.softmax_cross_entropy(model(mf.Tensor(image)), labels)
        loss.backward()
        return float(loss.data), {n: p.grad.copy() for n, p in model.named_parameters() if p.grad is not None}

    loss_gpu, grads_gpu = loss_and_grads()
    loss_cpu, grads_cpu = _numpy_branch(loss_and_grads)
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-12)
    assert grads_gpu.keys() == grads_cpu.keys() and len(grads_gpu) > 10
    largest = max(np.abs(g).max() for g in grads_cpu.values())
    for name in grads_cpu:
        np.testing.assert_allclose(grads_gpu[name], grads_cpu[name], rtol=1e-9, atol=1e-12 * largest, err_msg=name)
    kernels_run = {"im2col_f64", "col2im_f64", "max_pool_forward_f64", "softmax_loss_backward_f64"}
    assert kernels_run | ({"channel_sums_f64"} if backbone == "tiny-bn" else set()) <= set(on_host)


# ---------------------------------------------------------------------------
# The launcher's checks


@pytest.fixture
def no_compiling(monkeypatch):
    """Checks must fail before anything is compiled or launched."""

    def refuse(name, filename):
        raise AssertionError(f"launched {name} with bad arguments")

    monkeypatch.setattr(launch, "_function", refuse)
    monkeypatch.setattr(launch, "_current_device", lambda: 0)


def test_launch_refuses_host_arrays(no_compiling):
    x = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(
        TypeError, match=r"avg_pool_forward, argument 'x': got a numpy.ndarray in host memory.*to\('cuda'\)"
    ):
        launch.launch("avg_pool_forward", np.float32, 1, x, x, 1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0)


@pytest.mark.parametrize(
    "problem, match",
    [
        ("dtype", r"max_pool_forward, argument 'y': expected float32 elements, got float64"),
        ("argmax", r"max_pool_forward, argument 'argmax': expected int32 elements, got int64"),
        ("strided", r"max_pool_forward, argument 'x': the array of shape \(1, 1, 2, 2\) must be C-contiguous"),
        ("count", r"max_pool_forward: takes 17 arguments .*got 16"),
        ("overflow", r"max_pool_forward, argument 'N': 2147483648 does not fit a C int"),
        ("fraction", r"max_pool_forward, argument 'C': expected a whole number, got 1.5"),
        ("half", r"max_pool_forward: runs in float32 or float64, not float16"),
    ],
)
def test_launch_checks_arguments(no_compiling, monkeypatch, problem, match):
    monkeypatch.setattr(launch, "_device_id", lambda array: 0)
    x = np.zeros((1, 1, 2, 2), np.float32)
    y, argmax = np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int32)
    args = [x, y, argmax, 1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0, 1, 1]
    dtype = np.float32
    if problem == "dtype":
        args[1] = y.astype(np.float64)
    elif problem == "argmax":
        args[2] = argmax.astype(np.int64)
    elif problem == "strided":
        args[0] = np.zeros((1, 1, 2, 4), np.float32)[..., ::2]
    elif problem == "count":
        args.pop()
    elif problem == "overflow":
        args[3] = 2**31
    elif problem == "fraction":
        args[4] = 1.5
    else:
        dtype = np.float16
    with pytest.raises((TypeError, ValueError), match=match):
        launch.launch("max_pool_forward", dtype, 1, *args)


def test_launch_refuses_another_gpu(no_compiling, monkeypatch):
    monkeypatch.setattr(launch, "_device_id", lambda array: 1)
    x = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"argument 'x': the array is on GPU 1, the kernel runs on GPU 0"):
        launch.launch("avg_pool_forward", np.float32, 1, x, x, 1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0)


def test_kernel_wrappers_check_shapes(on_host):
    with pytest.raises(ValueError, match=r"col2im: cols has shape \(9, 5\), expected \(9, 4\)"):
        kernels.col2im(np.zeros((9, 5)), np.zeros((1, 1, 2, 2)), (3, 3), (1, 1), (1, 1), (1, 1), (0, 2), 2)
    with pytest.raises(ValueError, match=r"softmax_loss_forward: labels has shape \(1, 3\), expected \(1, 2\)"):
        kernels.softmax_loss_forward(np.zeros((1, 4, 2)), np.zeros((1, 3), np.int64), np.ones(4), 255)


def test_empty_tensors_give_zero_sums_and_gradients(on_host):
    """A batch of no images launches nothing; what the kernels would have written is zero, not leftover memory."""
    empty = np.zeros((0, 3, 4, 5))
    np.testing.assert_array_equal(kernels.channel_sums(empty, empty), np.zeros((2, 3)))
    gx, dgamma, dbeta = kernels.batch_norm_backward(empty, empty, np.zeros((2, 3)), np.ones(3), np.ones(3), 0)
    assert gx.shape == empty.shape and not on_host
    np.testing.assert_array_equal(dgamma, np.zeros(3))
    np.testing.assert_array_equal(dbeta, np.zeros(3))


def test_kernels_on_host_restores_what_it_replaced(host_libraries):
    """Inside, NumPy arrays take the GPU branch and launches are listed; after, even on an error, nothing is left."""
    before = (launch._function, launch._device_id, launch._current_device, kernels.on_gpu)
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    with pytest.raises(RuntimeError, match="inside"):
        with host.kernels_on_host() as launched:
            assert kernels.on_gpu(x)
            y = F.max_pool2d(x, 2, 2).data
            assert launched == ["max_pool_forward_f64"]
            np.testing.assert_array_equal(y, [[[[5.0, 7.0]]]])
            raise RuntimeError("inside")
    assert (launch._function, launch._device_id, launch._current_device, kernels.on_gpu) == before
    assert not kernels.on_gpu(x)


def test_host_entries_follow_the_launchers_table():
    """Every kernel of launch.SIGNATURES gets a host entry in both precisions, with its C parameters."""
    for filename in FILES:
        text = host.host_source(filename)
        for kernel, (source_file, params) in launch.SIGNATURES.items():
            if source_file == filename:
                declared = ", ".join(p.replace("T*", "float*").replace("T ", "float ") for p in params)
                assert f'extern "C" void host_{kernel}_f32(int blocks, int threads, {declared})' in text


# -- subnormal floats, as a GPU treats them ------------------------------------------------------


def _gpu_reads(a: np.ndarray) -> np.ndarray:
    """What a float32 kernel compiled with -ftz=true (CuPy's flag) reads: a subnormal as zero."""
    a = np.array(a, np.float32)
    a[np.abs(a) < np.finfo(np.float32).tiny] = 0
    return a


def test_max_pooling_compares_subnormals_as_zero_as_on_a_gpu(on_host):
    """The GPU's rule, as a direct loop: taps in order, a later tap wins only if it reads larger, and the winner's
    own bits are stored (a move, not arithmetic). NumPy on the CPU keeps subnormals and picks another."""
    tiny = np.finfo(np.float32).tiny
    x = np.zeros((1, 1, 2, 6), np.float32)
    x[0, 0, :, 0:2] = [[0.1 * tiny, 0.3 * tiny], [0.2 * tiny, -0.1 * tiny]]  # all subnormal: the first wins
    x[0, 0, :, 2:4] = [[-0.2 * tiny, 0.0], [0.1 * tiny, -1.0]]  # reads -0, 0, 0, -1: the first
    x[0, 0, :, 4:6] = [[0.1 * tiny, 0.5], [0.3 * tiny, 0.25]]  # a normal value wins as always
    y, argmax = kernels.max_pool_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), (1, 3))
    reads = _gpu_reads(x)
    for j in range(3):
        taps = [(kh, kw) for kh in range(2) for kw in range(2)]
        best = 0
        for k, (kh, kw) in enumerate(taps):
            if reads[0, 0, kh, 2 * j + kw] > reads[0, 0, taps[best][0], 2 * j + taps[best][1]]:
                best = k
        assert argmax[0, 0, 0, j] == best
        assert y[0, 0, 0, j].tobytes() == x[0, 0, taps[best][0], 2 * j + taps[best][1]].tobytes()
    assert y[0, 0, 0, 0] == np.float32(0.1 * tiny) and argmax[0, 0, 0, 2] == 1
    numpy_max = MaxPool2d((2, 2), (2, 2), (0, 0), (1, 1), False)
    assert _numpy_branch(lambda: numpy_max.forward(x))[0, 0, 0, 0] == np.float32(0.3 * tiny)  # the CPU differs


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimisers_flush_subnormal_inputs_and_results_as_on_a_gpu(on_host, name):
    """A subnormal weight, gradient or moment reads as zero, and a subnormal result is written as zero, so each
    of these updates leaves zeros where NumPy on the CPU would keep tiny values."""
    from minifcn import nn
    from minifcn.optim import SGD, Adam

    tiny = np.finfo(np.float32).tiny
    w = nn.Parameter(np.array([0.0, 1.0, 0.5 * tiny, 2.0], np.float32))
    w.grad = np.array([0.5 * tiny, 0.5 * tiny, 0.0, 1.0], np.float32)
    optimiser = SGD([w], lr=0.1, momentum=0.9) if name == "sgd" else Adam([w], lr=0.1)
    optimiser.step()
    state = {k: v for k, v in optimiser.state_dict().items() if np.ndim(v) == 1 and np.size(v) == 4}
    g = _gpu_reads(w.grad)  # [0, 0, 0, 1]
    if name == "sgd":  # v = 0.9 v + 0.1 g; w -= v, on what the GPU reads
        expected_v = np.float32(0.1) * g
        np.testing.assert_array_equal(state["velocity.0"], expected_v)
        expected_w = _gpu_reads([0.0, 1.0, 0.5 * tiny, 2.0]) - expected_v
    else:  # the first Adam step moves a weight by lr * sign(g) where g reads nonzero, and not at all elsewhere
        np.testing.assert_array_equal(state["m.0"], np.float32(0.1) * g)
        expected_w = _gpu_reads([0.0, 1.0, 0.5 * tiny, 2.0]) - np.float32(0.1) * np.sign(g)
    np.testing.assert_array_equal(w.data[:3], expected_w[:3])  # the flushed ones: exactly 0, 1, 0
    np.testing.assert_allclose(w.data[3], expected_w[3], rtol=1e-6)
