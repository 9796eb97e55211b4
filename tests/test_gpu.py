"""NumPy against CuPy on a real GPU: every op forward and backward, whole FCNs, a short training run.

Marked ``gpu``: skipped, with the reason, where CuPy sees no CUDA device (see conftest.py).
Run just these with ``python -m pytest -m gpu``.
"""

import copy
import json
import os

import numpy as np
import pytest
from device_cases import CONV_CASES, POOL_CASES
from reference_loops import conv2d_loop, max_pool2d_loop

import minifcn as mf
import minifcn.functional as F
import minifcn.nn as nn
from minifcn import cli, evaluate, predict, train
from minifcn.backend import device_of, to_device
from minifcn.checkpoint import load_checkpoint, model_from_checkpoint
from minifcn.cuda import launch
from minifcn.models import FCN8s

pytestmark = pytest.mark.gpu

DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


def _tol(dtype):
    return {"rtol": 2e-4, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


def _forward_backward(op, arrays, device, gy_seed=1):
    """op(device, *tensors) on ``device``: the output and every input gradient, as NumPy arrays."""
    tensors = [mf.Tensor(a.copy(), requires_grad=True).to(device) for a in arrays]
    y = op(device, *tensors)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(y.dtype)
    (y * mf.Tensor(gy).to(device)).sum().backward()
    assert y.device == device and all(t.grad is None or device_of(t.grad) == device for t in tensors)
    return y.numpy(), [None if t.grad is None else to_device(t.grad, "cpu") for t in tensors]


def _compare(op, arrays, dtype=np.float64):
    """Run ``op`` on the CPU and on the GPU; outputs and gradients must agree."""
    y_cpu, g_cpu = _forward_backward(op, arrays, "cpu")
    y_gpu, g_gpu = _forward_backward(op, arrays, "cuda")
    np.testing.assert_allclose(y_gpu, y_cpu, **_tol(dtype))
    for a, b in zip(g_gpu, g_cpu):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, **_tol(dtype))
    return y_gpu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(case, dtype, rng):
    N, C, H, W, KH, KW, stride, padding, dilation = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((4, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = _compare(lambda d, x, w, b: F.conv2d(x, w, b, stride, padding, dilation), [x, w, b], dtype)
    np.testing.assert_allclose(y, conv2d_loop(x, w, b, stride, padding, dilation), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride, padding, kernel", [(2, 1, 4), (3, 0, 3), (1, 1, 3), (8, 0, 16), (32, 0, 64)])
def test_conv_transpose2d(stride, padding, kernel, dtype, rng):
    x = rng.standard_normal((2, 3, 4, 3)).astype(dtype)
    w = rng.standard_normal((3, 2, kernel, kernel)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    _compare(lambda d, x, w, b: F.conv_transpose2d(x, w, b, stride, padding), [x, w, b], dtype)


def test_conv2d_in_bands(monkeypatch, rng):
    """A layer whose columns exceed the budget is done band by band on the GPU too."""
    from minifcn.functional import geometry

    monkeypatch.setattr(geometry, "IM2COL_BUDGET_BYTES", 4000)
    x, w = rng.standard_normal((2, 3, 13, 9)), rng.standard_normal((4, 3, 3, 3))
    _compare(lambda d, x, w: F.conv2d(x, w, None, 2, 1), [x, w])
    _compare(lambda d, x, w: F.conv_transpose2d(x, w, None, 2, 1), [x, rng.standard_normal((3, 2, 4, 4))])


def test_each_op_takes_its_one_gpu_route_and_matches_the_reference(rng):
    """On a GPU every dispatcher takes its GPU route, even inside minifcn.reference(); the results are the
    CPU references' in float64."""
    from minifcn.functional import routes

    x = rng.standard_normal((2, 3, 12, 10))
    w, b = rng.standard_normal((4, 3, 4, 4)), rng.standard_normal(4)
    labels = rng.integers(0, 4, (2, 3, 2))

    def net(d, x, w, b, gamma, beta):
        h = F.conv2d(x, w, b, stride=2, padding=3)
        h = F.batch_norm(h, to_device(np.zeros(4), d), to_device(np.ones(4), d), gamma, beta)
        h = F.max_pool2d(F.relu(h), 2, ceil_mode=True)
        return h

    with mf.reference():
        y_cpu, g_cpu = _forward_backward(net, [x, w, b, np.ones(4), np.zeros(4)], "cpu")
    before = routes.counts()
    with mf.reference():
        y_gpu, g_gpu = _forward_backward(net, [x, w, b, np.ones(4), np.zeros(4)], "cuda")
    taken = {key for key, n in routes.counts().items() if n > before.get(key, 0)}
    for op in (
        "conv2d",
        "conv2d input gradient",
        "conv2d weight gradient",
        "batch_norm",
        "batch_norm backward",
        "max_pool2d",
        "max_pool2d backward",
    ):
        assert (op, "gpu") in taken, (op, taken)
    np.testing.assert_allclose(y_gpu, y_cpu, rtol=1e-10, atol=1e-10)
    for a, c in zip(g_gpu, g_cpu):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)
    scores = mf.Tensor(rng.standard_normal((2, 4, 3, 2))).to("cuda")
    before = routes.counts()
    F.softmax_cross_entropy(scores, to_device(labels, "cuda"))
    assert routes.counts()[("softmax_cross_entropy", "gpu")] > before.get(("softmax_cross_entropy", "gpu"), 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling(case, dtype, rng):
    N, C, H, W, kernel, stride, padding, dilation, ceil_mode = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    x[0, 0, 1, :3] = x[0, 0, 1, 0]  # ties: the first tap wins on both devices
    y = _compare(lambda d, x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode), [x], dtype)
    np.testing.assert_array_equal(y, max_pool2d_loop(x, kernel, stride, padding, dilation, ceil_mode))
    if dilation == (1, 1):
        _compare(lambda d, x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode), [x], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy(reduction, dtype, weighted, rng):
    scores = (rng.standard_normal((2, 5, 6, 7)) * 3).astype(dtype)
    scores[0, :, 0, 0] += 500  # scores that overflow exp unless the max is subtracted
    labels = rng.integers(0, 5, (2, 6, 7)).astype(np.uint8)
    labels[1, 2:4] = 255  # ignored pixels
    weight = rng.uniform(0.2, 4.0, 5) if weighted else None  # host weights, moved by the op

    def op(d, s):
        return F.softmax_cross_entropy(s, to_device(labels, d), 255, reduction, weight) * 1.0

    _compare(op, [scores], dtype)


def test_softmax_cross_entropy_all_ignored():
    labels = np.full((1, 2, 2), 255)
    loss = F.softmax_cross_entropy(mf.Tensor(np.ones((1, 3, 2, 2))).to("cuda"), to_device(labels, "cuda"))
    assert float(loss.numpy()) == 0.0


def test_softmax_cross_entropy_bad_label_names_it(cp):
    labels = cp.asarray(np.array([[[0, 7]]]))
    with pytest.raises(ValueError, match=r"outside \[0, 3\).*values: \[7\]"):
        F.softmax_cross_entropy(mf.Tensor(np.zeros((1, 3, 1, 2))).to("cuda"), labels)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_and_shape_ops(dtype, rng):
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    z = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    _compare(lambda d, x: F.relu(x), [x], dtype)
    _compare(lambda d, x: F.log_softmax(x), [x], dtype)
    _compare(lambda d, x, z: F.add(x, z) * z, [x, z], dtype)
    _compare(lambda d, x, z: F.mul(x, z), [x, z], dtype)
    _compare(lambda d, x: F.crop(x, (1, 2), (3, 2)), [x], dtype)
    _compare(lambda d, x, z: F.concat([x, z], axis=1), [x, z], dtype)
    w, b = rng.standard_normal((4, 90)).astype(dtype), rng.standard_normal(4).astype(dtype)
    _compare(lambda d, x, w, b: F.linear(F.flatten(x), w, b), [x, w, b], dtype)
    _compare(lambda d, x: F.local_response_norm(x, 3, 0.5, 0.75, 2.0), [x], dtype)
    _compare(lambda d, x: F.narrow(x, 1, 1, 2), [x], dtype)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(training, rng):
    x = rng.standard_normal((3, 4, 5, 6)) * 2 + 1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    stats = {}

    def op(device, x, g, b):
        mean, var = to_device(np.linspace(-1, 1, 4), device), to_device(np.linspace(1, 2, 4), device)
        y = F.batch_norm(x, mean, var, g, b, training=training, momentum=0.1, eps=1e-5)
        stats[device] = (to_device(mean, "cpu"), to_device(var, "cpu"))
        return y

    _compare(op, [x, gamma, beta])
    for a, b in zip(stats["cuda"], stats["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)  # the running statistics move alike


@pytest.mark.parametrize("dtype", DTYPES)
def test_channel_sums_kernel_is_a_float64_sum(cp, dtype, rng):
    from minifcn.cuda import kernels

    for shape in [(2, 3, 5, 7), (1, 2, 700, 900), (3, 600, 2, 2)]:
        a, b = (rng.standard_normal(shape) + 10).astype(dtype), rng.standard_normal(shape).astype(dtype)
        sums = kernels.channel_sums(cp.asarray(a), cp.asarray(b)).get()
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        np.testing.assert_allclose(sums[0], a64.sum(axis=(0, 2, 3)), rtol=1e-12)
        np.testing.assert_allclose(sums[1], (a64 * b64).sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-9)


def test_tf32_is_a_choice(cp, rng):
    """Off by default (float32 matrix products to ~1e-6); on, they move by ~1e-4..1e-3 (TF32's 10-bit mantissa)."""
    from minifcn.backend import set_tf32, tf32_enabled

    a, b = rng.standard_normal((512, 1024)), rng.standard_normal((1024, 256))
    exact = a @ b
    a32, b32 = cp.asarray(a, cp.float32), cp.asarray(b, cp.float32)
    assert not tf32_enabled()
    off = _relative((a32 @ b32).get(), exact)
    set_tf32(True)
    try:
        on = _relative((a32 @ b32).get(), exact)
    finally:
        set_tf32(False)
    after = _relative((a32 @ b32).get(), exact)
    major = cp.cuda.Device().compute_capability
    assert off < 1e-5 and after == pytest.approx(off)
    if int(major) >= 80:  # TF32 exists from Ampere on
        assert 1e-5 < on < 1e-2


def test_dropout_on_the_gpu(cp):
    x = mf.Tensor(np.ones((64, 64, 16), np.float32), requires_grad=True).to("cuda")
    y = F.dropout(x, 0.5)
    y.sum().backward()
    values = y.numpy()
    assert set(np.unique(values).tolist()) == {0.0, 2.0}
    assert 0.45 < (values == 0).mean() < 0.55
    np.testing.assert_array_equal(to_device(x.grad, "cpu"), values)  # dy/dx is the same scaled mask


def test_dropout_draws_the_cpus_masks_from_the_same_seed(cp):
    """The masks come from the package's host generator: the same seed, the same mask on either device."""
    x = np.ones((8, 16, 5, 5), np.float32)
    mf.manual_seed(3)
    on_cpu = F.dropout(mf.Tensor(x), 0.5).numpy()
    mf.manual_seed(3)
    on_gpu = F.dropout(mf.Tensor(x).to("cuda"), 0.5).numpy()
    np.testing.assert_array_equal(on_gpu, on_cpu)


def test_cuda_n_is_the_current_gpu_or_refused(cp):
    current = cp.cuda.runtime.getDevice()
    t = mf.Tensor(np.arange(4.0)).to(f"cuda:{current}")
    assert t.device == "cuda" and t.data.device.id == current
    other = cp.cuda.runtime.getDeviceCount()  # an index no device has, or another GPU's
    with pytest.raises(ValueError, match=f"'cuda:{other}'"):
        mf.Tensor(np.arange(4.0)).to(f"cuda:{other}")


def test_surgery_on_a_net_already_on_the_gpu(cp, rng):
    from minifcn.models import FCN8s
    from minifcn.surgery import randomise_scores, set_n_class

    model = FCN8s(5, "tiny-bn", False).to("cuda")
    set_n_class(model, 3)
    randomise_scores(model, 0)
    scores = model(mf.Tensor(rng.standard_normal((1, 3, 40, 40)).astype(np.float32)).to("cuda"))
    assert scores.device == "cuda" and scores.shape == (1, 3, 40, 40)


def test_subnormals_read_as_zero_on_the_gpu(cp):
    """CuPy's -ftz=true: max pooling over subnormals keeps the first tap, and SGD writes zeros for them; the host
    build follows the same rule (tests/test_cuda_sources.py)."""
    from minifcn import nn
    from minifcn.optim import SGD

    tiny = np.finfo(np.float32).tiny
    x = np.array([[[[0.1 * tiny, 0.3 * tiny], [0.2 * tiny, -0.1 * tiny]]]], np.float32)
    y = F.max_pool2d(mf.Tensor(x).to("cuda"), 2, stride=2).numpy()
    assert y.ravel()[0] == np.float32(0.1 * tiny)
    w = nn.Parameter(np.array([0.0, 1.0, 0.5 * tiny], np.float32))
    w.grad = np.array([0.5 * tiny, 0.5 * tiny, 0.0], np.float32)
    w.data, w.grad = cp.asarray(w.data), cp.asarray(w.grad)
    SGD([w], lr=0.1, momentum=0.9).step()
    np.testing.assert_array_equal(cp.asnumpy(w.data), [0.0, 1.0, 0.0])


def test_ops_refuse_mixed_devices(rng):
    x = mf.Tensor(rng.standard_normal((1, 2, 5, 5))).to("cuda")
    w = mf.Tensor(rng.standard_normal((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"input 0 on cuda, input 1 on cpu"):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match=r"scores are on cuda, labels on cpu"):
        F.softmax_cross_entropy(x, np.zeros((1, 5, 5), np.int64))


def test_kernels_compile_once_per_device(cp, rng):
    x = mf.Tensor(rng.standard_normal((1, 2, 6, 6))).to("cuda")
    F.max_pool2d(x, 2, 2)
    key = (cp.cuda.runtime.getDevice(), "pool.cu")
    module = launch._modules[key]
    F.max_pool2d(x, 3, 1)
    assert launch._modules[key] is module


def test_launch_refuses_a_host_array(cp):
    with pytest.raises(TypeError, match=r"argument 'x': got a numpy.ndarray in host memory"):
        launch.launch(
            "avg_pool_forward",
            np.float32,
            1,
            np.zeros(4, np.float32),
            cp.zeros(1, cp.float32),
            1,
            1,
            2,
            2,
            1,
            1,
            2,
            2,
            2,
            2,
            0,
            0,
        )


# ---------------------------------------------------------------------------
# Whole networks


def _loss_and_grads(model, image, labels, device):
    model.zero_grad()
    loss = F.softmax_cross_entropy(model(mf.Tensor(to_device(image, device))), to_device(labels, device))
    loss.backward()
    grads = {n: to_device(p.grad, "cpu") for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.numpy()), grads


def _relative(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / (np.linalg.norm(b) + 1e-300))


def _zero_by_construction(name, backbone):
    """A convolution's bias just before batch norm: its exact gradient is 0 (the norm subtracts the mean)."""
    return backbone.endswith("-bn") and name.startswith(("conv", "fc")) and name.endswith(".bias")


@pytest.mark.parametrize("backbone, size", [("tiny", 48), ("tiny-bn", 48), ("vgg16", 64)])
def test_fcn8s_matches_numpy(backbone, size, rng):
    """Whole FCN-8s (training mode, batch statistics, no dropout), CPU against GPU.

    float64: the same numbers to ~1e-10. float32: two float32 nets differ from
    each other as much as each differs from float64, so each GPU float32
    gradient is compared with float64, within 10x the float32 error measured
    on the CPU for the same net (the net's own float32 noise level).
    """
    mf.manual_seed(0)
    reference = FCN8s(n_class=5, backbone=backbone, dtype=np.float64)
    for name, p in reference.named_parameters():
        if name.startswith("score"):  # zero at init; made random so that every layer gets a gradient
            p.data = rng.standard_normal(p.shape) * 0.01
    state = reference.state_dict()
    image = rng.standard_normal((2, 3, size, size + 6))
    labels = rng.integers(0, 5, (2, size, size + 6))
    labels[0, :4] = 255

    def net(dtype, device):
        model = FCN8s(n_class=5, backbone=backbone, dtype=dtype)
        model.load_state_dict({k: v.astype(dtype) for k, v in state.items()})
        model.train()
        for _, m in model.named_modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        return model.to(device)

    runs = {
        (dtype, device): _loss_and_grads(net(dtype, device), image.astype(dtype), labels, device)
        for dtype in (np.float64, np.float32)
        for device in ("cpu", "cuda")
    }
    (loss_cpu, grads_cpu), (loss_gpu, grads_gpu) = runs[(np.float64, "cpu")], runs[(np.float64, "cuda")]
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-10)
    assert grads_gpu.keys() == grads_cpu.keys() and len(grads_cpu) > 10
    largest = max(np.abs(g).max() for g in grads_cpu.values())
    for name, g in grads_cpu.items():
        np.testing.assert_allclose(grads_gpu[name], g, rtol=1e-8, atol=1e-10 * largest, err_msg=name)

    (_, grads32_cpu), (loss32_gpu, grads32_gpu) = runs[(np.float32, "cpu")], runs[(np.float32, "cuda")]
    measured = {n: _relative(grads32_cpu[n], g) for n, g in grads_cpu.items() if not _zero_by_construction(n, backbone)}
    tolerance = max(10 * max(measured.values()), 1e-5)
    # tiny (no batch norm) measures 4e-3 at conv1: ReLU and max-pool ties that float32 rounding settles the other
    # way; tiny-bn ~6e-5 and vgg16 ~1e-6 (tests/test_numerics.py holds tiny-bn under 1e-3).
    assert tolerance < 0.1, measured
    assert loss32_gpu == pytest.approx(loss_cpu, rel=1e-5)
    for name in measured:
        assert _relative(grads32_gpu[name], grads_cpu[name]) < tolerance, (name, tolerance)

    with mf.no_grad():
        gpu_model, cpu_model = net(np.float64, "cuda").eval(), net(np.float64, "cpu").eval()
        scores_gpu = gpu_model(mf.Tensor(to_device(image, "cuda"))).numpy()
        scores_cpu = cpu_model(mf.Tensor(image)).numpy()
    assert scores_gpu.shape == (2, 5, size, size + 6)
    np.testing.assert_allclose(scores_gpu, scores_cpu, rtol=1e-10, atol=1e-10 * np.abs(scores_cpu).max())


def test_inception_googlenet_fusion_and_heads_match_numpy(rng):
    """The issue-7 networks: FCN-32s on tiny-googlenet, early and late fusion, two heads, CPU against GPU."""
    from minifcn.models import FCN32s, LateFusionFCN32s, MultiHeadFCN, add_input_channels

    mf.manual_seed(0)
    nets = {
        "googlenet": (FCN32s(3, "tiny-googlenet"), 3),
        "early": (add_input_channels(FCN8s(3, "tiny"), 1), 4),
        "late": (LateFusionFCN32s(FCN32s(3, "tiny"), FCN32s(3, "tiny")), 4),
        "heads": (MultiHeadFCN("fcn16s", {"a": 3, "b": 2}, "tiny"), 3),
    }
    for name, (net, channels) in nets.items():
        for pname, p in net.named_parameters():
            if "score" in pname:
                p.data = (rng.standard_normal(p.shape) * 0.01).astype(p.dtype)
        net.eval()
        gpu = copy.deepcopy(net).to("cuda")
        x = rng.standard_normal((1, channels, 36, 40)).astype(np.float32)
        with mf.no_grad():
            out_cpu, out_gpu = net(mf.Tensor(x)), gpu(mf.Tensor(to_device(x, "cuda")))
        if isinstance(out_cpu, dict):
            out_cpu, out_gpu = out_cpu["b"], out_gpu["b"]
        scale = np.abs(out_cpu.data).max()
        np.testing.assert_allclose(out_gpu.numpy() / scale, out_cpu.data / scale, atol=1e-4, err_msg=name)


# ---------------------------------------------------------------------------
# The command lines


SMALL = [
    "--image-size",
    "32",
    "--batch-size",
    "2",
    "--eval-limit",
    "4",
    "--samples",
    "2",
    "--iters",
    "6",
    "--eval-every",
    "3",
    "--checkpoint-every",
    "3",
]


def test_train_on_the_gpu_matches_the_cpu(tmp_path, capsys):
    runs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert cli.run(train.main, SMALL + ["--device", device, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert f"device {device}" in printed
        runs[device] = out
    losses = {
        d: [float(line.split(",")[1]) for line in open(out / "log.csv").read().splitlines()[1:]]
        for d, out in runs.items()
    }
    assert len(losses["cuda"]) == 6 and np.isfinite(losses["cuda"]).all()
    assert losses["cuda"][0] == pytest.approx(losses["cpu"][0], rel=1e-4)  # same weights, same batch
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=5e-2)  # rounding differences grow under Adam

    # The checkpoint is device-neutral: host arrays, loadable and usable on the CPU.
    last = load_checkpoint(str(runs["cuda"] / "last.npz"))
    assert last.meta["iteration"] == 6
    assert all(isinstance(a, np.ndarray) for a in last.model.values())
    model = model_from_checkpoint(last)
    assert all(p.device == "cpu" for p in model.parameters())
    metrics = json.load(open(runs["cuda"] / "metrics.json"))
    assert 0.0 <= metrics["mean_iu"] <= 1.0

    # evaluate and predict take --device too, and agree across devices.
    scores = {}
    for device in ("cpu", "cuda"):
        target = tmp_path / f"eval-{device}"
        args = [
            "--checkpoint",
            str(runs["cuda"] / "last.npz"),
            "--limit",
            "4",
            "--device",
            device,
            "--out",
            str(target),
        ]
        assert cli.run(evaluate.main, args) == 0
        scores[device] = json.load(open(target / "metrics.json"))["mean_iu"]
    assert scores["cuda"] == pytest.approx(scores["cpu"], abs=0.02)
    image = tmp_path / "image.png"
    from PIL import Image

    from minifcn.data import Shapes

    Image.fromarray(Shapes("val", 32)[0][0]).save(image)
    assert (
        cli.run(
            predict.main,
            [
                "--checkpoint",
                str(runs["cuda"] / "last.npz"),
                "--device",
                "cuda",
                "--out",
                str(tmp_path / "pred"),
                str(image),
            ],
        )
        == 0
    )
    assert os.path.exists(tmp_path / "pred" / "image.png")


@pytest.mark.parametrize("backbone", ["tiny-bn", "tiny"])  # tiny has dropout
def test_a_resumed_gpu_run_is_the_uninterrupted_one(backbone, tmp_path, monkeypatch):
    """Ctrl-C during iteration 2, then --resume: the weights at the end are the uninterrupted run's, bit for bit."""
    import signal

    from minifcn import loop

    args = SMALL + ["--device", "cuda", "--backbone", backbone, "--iters", "4", "--eval-every", "4"]
    assert cli.run(train.main, args + ["--out", str(tmp_path / "whole")]) == 0
    real_step = loop.Loop.step

    def step_then_ctrl_c(self, t, batch=None):
        loss = real_step(self, t, batch)
        if t == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(loop.Loop, "step", step_then_ctrl_c)
    assert cli.run(train.main, args + ["--out", str(tmp_path / "cut")]) == 130
    monkeypatch.setattr(loop.Loop, "step", real_step)
    resume = ["--resume", str(tmp_path / "cut" / "last.npz"), "--out", str(tmp_path / "cut")]
    assert cli.run(train.main, args + resume) == 0
    whole = load_checkpoint(str(tmp_path / "whole" / "last.npz"))
    resumed = load_checkpoint(str(tmp_path / "cut" / "last.npz"))
    for name, value in whole.model.items():
        np.testing.assert_array_equal(value, resumed.model[name], err_msg=name)


def test_resume_a_gpu_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.run(train.main, SMALL + ["--device", "cuda", "--iters", "3", "--out", str(out)]) == 0
    assert cli.run(train.main, SMALL + ["--device", "cuda", "--resume", str(out / "last.npz"), "--out", str(out)]) == 0
    rows = open(out / "log.csv").read().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
