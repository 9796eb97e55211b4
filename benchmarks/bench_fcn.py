"""Time FCN-8s (VGG16) on a 500x500 image: forward, and forward + backward, beside PyTorch.

    python benchmarks/bench_fcn.py [--repeats 5] [--size 500] [--threads 2]

minifcn's FCN8s(n_class=21, backbone='vgg16') and the same network written
in PyTorch (when torch is importable), holding the same random weights, on
one 1x3xSxS float32 image. "forward" is one pass in evaluation mode without
gradients; "fwd+bwd" is one training pass: forward with dropout, the mean
softmax loss over random labels, and backward into every parameter except
the fixed bilinear upsampling (as the reference trains). Times are medians
over ``--repeats`` runs after one warm-up, minifcn and torch interleaved in
one process so that their ratio is meaningful on a shared machine.

The float32 GEMM rate of both (NumPy's BLAS and torch's, 2048x2048
products on the same threads, interleaved) is printed first: where BLAS
itself is the slower, minifcn's passes are bound to be slower by as much in
their products (``profile_cpu.py`` says how much of a pass that is).

Memory is measured in a fresh process per case: the peak resident memory
(sampled every millisecond) during one pass, minus the resident memory
just before it, so it counts what the pass needs beyond the weights
(activations, saved tensors, gradients, buffers). glibc is told to return
large freed blocks to the system at once (MALLOC_MMAP_THRESHOLD_), so that
resident memory follows what is live.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
import minifcn.nn as nn  # noqa: E402
from minifcn.models import FCN8s  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_conv import cpu_name, openblas_core  # noqa: E402

N_CLASS = 21


def build_minifcn(seed: int = 0) -> FCN8s:
    """FCN-8s with random He-scaled weights everywhere (the zero score layers made random, so values flow)."""
    mf.manual_seed(seed)
    model = FCN8s(n_class=N_CLASS, backbone="vgg16")
    rng = np.random.default_rng(seed)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        w = getattr(model, name).weight
        w.data = (rng.standard_normal(w.shape, dtype=np.float32) * 0.01).astype(np.float32)
    return model


def build_torch(torch, ours: FCN8s):
    """The same network in PyTorch, with ``ours``'s weights copied in."""
    tnn = torch.nn

    def translate(layer):
        if isinstance(layer, nn.Conv2d):
            t = tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, nn.ConvTranspose2d):
            t = tnn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, bias=False)
        elif isinstance(layer, nn.MaxPool2d):
            return tnn.MaxPool2d(layer.kernel_size, layer.stride, ceil_mode=layer.ceil_mode)
        elif isinstance(layer, nn.ReLU):
            return tnn.ReLU(inplace=True)
        elif isinstance(layer, nn.Dropout):
            return tnn.Dropout(layer.p)
        elif isinstance(layer, nn.BatchNorm2d):  # tiny-bn (bench_camvid.py): the same statistics and parameters
            t = tnn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
            with torch.no_grad():
                for name in ("weight", "bias"):
                    getattr(t, name).copy_(torch.from_numpy(getattr(layer, name).data))
                for name in ("running_mean", "running_var"):
                    getattr(t, name).copy_(torch.from_numpy(getattr(layer, name)))
            return t
        else:
            raise TypeError(type(layer).__name__)
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(layer.weight.data))
            if layer.bias is not None:
                t.bias.copy_(torch.from_numpy(layer.bias.data))
        t.weight.requires_grad_(layer.weight.requires_grad)
        return t

    class TorchFCN8s(tnn.Module):
        def __init__(self):
            super().__init__()
            self.layers = tnn.ModuleDict({name: translate(m) for name, m in ours._modules.items()})
            self.trunk = list(ours.trunk_names)
            self.offsets = dict(ours.crop_offsets)

        def run(self, h, names):
            for name in names:
                h = self.layers[name](h)
            return h

        def forward(self, x):
            L, t, o = self.layers, self.trunk, self.offsets
            i3, i4 = t.index("pool3") + 1, t.index("pool4") + 1
            pool3 = self.run(x, t[:i3])
            pool4 = self.run(pool3, t[i3:i4])
            fc7 = self.run(pool4, t[i4:])
            up2 = L["upscore2"](L["score_fr"](fc7))
            s4 = L["score_pool4"](pool4)
            a = o["score_pool4c"]
            up4 = L["upscore_pool4"](up2 + s4[:, :, a : a + up2.shape[2], a : a + up2.shape[3]])
            s3 = L["score_pool3"](pool3)
            a = o["score_pool3c"]
            up8 = L["upscore8"](up4 + s3[:, :, a : a + up4.shape[2], a : a + up4.shape[3]])
            a = o["score"]
            return up8[:, :, a : a + x.shape[2], a : a + x.shape[3]]

    return TorchFCN8s()


def passes(kind: str, model, torch, x: np.ndarray, labels: np.ndarray):
    """(forward, forward_backward) closures for minifcn or torch."""
    if kind == "minifcn":
        tx = mf.Tensor(x)

        def forward():
            model.eval()
            with mf.no_grad():
                return model(tx).data

        def forward_backward():
            model.train()
            F.softmax_cross_entropy(model(tx), labels).backward()
            model.zero_grad()

        return forward, forward_backward

    tx, tl = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))

    def forward():
        model.eval()
        with torch.no_grad():
            return model(tx).numpy()

    def forward_backward():
        model.train()
        torch.nn.functional.cross_entropy(model(tx), tl, ignore_index=255).backward()
        model.zero_grad(set_to_none=True)

    return forward, forward_backward


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra_rss(fn) -> int:
    """Peak resident memory while ``fn`` runs, minus the resident memory before it (sampled every ms)."""
    before, peak, done = rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], rss_bytes()) - before


def worker(kind: str, case: str, size: int, threads: int) -> None:
    """One memory measurement in this (fresh) process; prints JSON."""
    import gc

    torch = None
    ours = build_minifcn()
    model = ours
    if kind == "torch":
        import torch

        torch.set_num_threads(threads)
        model = build_torch(torch, ours)
        del ours
    gc.collect()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, size, size), dtype=np.float32)
    labels = rng.integers(0, N_CLASS, size=(1, size, size))
    forward, forward_backward = passes(kind, model, torch, x, labels)
    extra = peak_extra_rss(forward if case == "forward" else forward_backward)
    print(json.dumps({"extra": extra, "model": rss_bytes()}))


def measure_memory(kind: str, case: str, size: int, threads: int) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, case, "--size", str(size), "--threads", str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["extra"]


def gemm_rates(torch, n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """float32 GFLOP/s of an n x n x n product: NumPy's BLAS, and torch's when given; medians, interleaved."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    products = {"numpy": lambda: a @ a}
    if torch is not None:
        t = torch.from_numpy(a)
        products["torch"] = lambda: t @ t
    times: dict[str, list[float]] = {k: [] for k in products}
    for _ in range(repeats + 1):  # the first round warms up
        for k, f in products.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: 2 * n**3 / statistics.median(v[1:]) / 1e9 for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        worker(args.worker[0], args.worker[1], args.size, args.threads)
        return
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None

    S = args.size
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; numpy {np.__version__} with OpenBLAS kernels "
        f"'{openblas_core()}'; torch {torch.__version__ if torch else 'not installed'} ({args.threads} threads)"
    )
    rates = gemm_rates(torch)
    print(
        f"float32 GEMM 2048^3: numpy {rates['numpy']:.0f} GFLOP/s"
        + (f", torch {rates['torch']:.0f} GFLOP/s (numpy's at {rates['numpy'] / rates['torch']:.2f}x)" if torch else "")
    )
    print(
        f"FCN-8s, VGG16 backbone, {N_CLASS} classes, input 1x3x{S}x{S} float32; "
        f"median of {args.repeats} runs after one warm-up\n"
    )
    ours = build_minifcn()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, S, S), dtype=np.float32)
    labels = rng.integers(0, N_CLASS, size=(1, S, S))
    kinds = {"minifcn": passes("minifcn", ours, None, x, labels)}
    if torch is not None:
        kinds["torch"] = passes("torch", build_torch(torch, ours), torch, x, labels)

    outputs = {k: f[0]() for k, f in kinds.items()}  # warm-up, and the outputs to compare
    for f in kinds.values():
        f[1]()
    times: dict[str, dict[str, list[float]]] = {k: {"forward": [], "fwd+bwd": []} for k in kinds}
    for _ in range(args.repeats):
        for case, index in (("forward", 0), ("fwd+bwd", 1)):
            for k, f in kinds.items():  # interleaved
                t0 = time.perf_counter()
                f[index]()
                times[k][case].append(time.perf_counter() - t0)

    memory = {}
    if not args.no_memory:
        for k in kinds:
            memory[k] = {case: measure_memory(k, case, S, args.threads) for case in ("forward", "fwd+bwd")}

    header = f"{'':<16}{'forward (s)':>12}{'fwd+bwd (s)':>13}{'fwd mem (MiB)':>15}{'f+b mem (MiB)':>15}"
    print(header)
    print("-" * len(header))
    med = {k: {c: statistics.median(v) for c, v in t.items()} for k, t in times.items()}
    for k in kinds:
        mem = memory.get(k, {})
        cells = "".join(f"{mem[c] / 2**20:>15.0f}" if c in mem else f"{'-':>15}" for c in ("forward", "fwd+bwd"))
        label = "minifcn" if k == "minifcn" else "torch (oneDNN)"
        print(f"{label:<16}{med[k]['forward']:>12.2f}{med[k]['fwd+bwd']:>13.2f}{cells}")
    if torch is not None:
        r = {c: med["minifcn"][c] / med["torch"][c] for c in ("forward", "fwd+bwd")}
        mem_r = "".join(
            f"{memory['minifcn'][c] / memory['torch'][c]:>14.2f}x" if memory else f"{'-':>15}"
            for c in ("forward", "fwd+bwd")
        )
        print("-" * len(header))
        print(f"{'ratio':<16}{r['forward']:>11.2f}x{r['fwd+bwd']:>12.2f}x{mem_r}")
        diff = np.abs(outputs["minifcn"] - outputs["torch"]).max()
        print(f"\nscores agree: max |minifcn - torch| = {diff:.2e} (scores up to {np.abs(outputs['torch']).max():.2e})")
    print(
        "mem: peak resident memory during one pass beyond the resident memory before it "
        f"(weights: {sum(p.nbytes for p in ours.state_dict().values()) / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
