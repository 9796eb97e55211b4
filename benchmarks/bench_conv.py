"""Time minifcn's conv2d (forward + backward) on VGG16's layer shapes, beside PyTorch's.

    python benchmarks/bench_conv.py [--shapes vgg16|quick] [--repeats 15] [--threads 2] [--no-memory]

``--shapes quick``: the 3x3 layers of the quick preset's tiny-bn FCN-8s
instead, at its sizes (128x128 images, conv1 at 326x326 after pad 100),
batch 4 unless ``--batch`` says otherwise.

For each shape, the median wall time over ``--repeats`` runs (after warm-up)
of one forward pass and one backward pass (dX, dW and db, as in the middle of
a network), for minifcn and, when torch is importable, for
``torch.nn.functional.conv2d`` on the same arrays and thread count. Both are
timed in the same process, interleaved, so their ratio is meaningful on a
noisy shared machine.

The last row is the memory case from the FCN: conv1_2 on a 500x500 image
(64 channels at 698x698 after conv1_1's pad 100), whose im2col buffer would
be about 1.1 GB; it is processed in bands of output rows within
``minifcn.functional.geometry.IM2COL_BUDGET_BYTES``. Its peak memory is traced with
tracemalloc (NumPy reports its allocations there).
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import platform
import statistics
import time
import tracemalloc
import warnings

import numpy as np

import minifcn as mf
import minifcn.functional as F
from minifcn.functional import geometry

# name, in channels, out channels, input height = width (3x3 kernels, pad 1, stride 1)
VGG16_SHAPES = [
    ("conv1_2", 64, 64, 112),
    ("conv2_2", 128, 128, 56),
    ("conv3_2", 256, 256, 56),
    ("conv4_2", 512, 512, 28),
]
QUICK_SHAPES = [
    ("conv1_2", 4, 4, 326),
    ("conv2_1", 4, 8, 163),
    ("conv2_2", 8, 8, 163),
    ("conv3_1", 8, 32, 82),
    ("conv3_2", 32, 32, 82),
    ("conv4_1", 32, 64, 41),
    ("conv4_2", 64, 64, 41),
    ("conv5_1", 64, 128, 21),
    ("conv5_2", 128, 128, 21),
]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def openblas_core() -> str:
    """The kernel family NumPy's bundled OpenBLAS runs ('SkylakeX', 'Haswell', ...).

    OpenBLAS picks it for the CPU when it loads, unless the environment
    variable OPENBLAS_CORETYPE names one.
    """
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(folder, "*openblas*")):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return "unknown"


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def minifcn_step(x: np.ndarray, w: np.ndarray, b: np.ndarray, gy: np.ndarray):
    def forward():
        with mf.no_grad():
            F.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), padding=1)

    def forward_backward():
        tx = mf.Tensor(x, requires_grad=True)
        tw = mf.Tensor(w, requires_grad=True)
        tb = mf.Tensor(b, requires_grad=True)
        F.conv2d(tx, tw, tb, padding=1).backward(gy)

    return forward, forward_backward


def torch_step(torch, x: np.ndarray, w: np.ndarray, b: np.ndarray, gy: np.ndarray):
    tx0, tw0, tb0, tgy = (torch.from_numpy(a) for a in (x, w, b, gy))

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx0, tw0, tb0, padding=1)

    def forward_backward():
        tx = tx0.clone().requires_grad_()
        tw = tw0.clone().requires_grad_()
        tb = tb0.clone().requires_grad_()
        torch.nn.functional.conv2d(tx, tw, tb, padding=1).backward(tgy)

    return forward, forward_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--shapes", choices=("vgg16", "quick"), default="vgg16")
    parser.add_argument("--batch", type=int, default=None, help="1 for vgg16, 4 for quick")
    parser.add_argument("--no-memory", action="store_true", help="skip the 698x698 memory case")
    args = parser.parse_args()
    if args.batch is None:
        args.batch = 4 if args.shapes == "quick" else 1

    warnings.filterwarnings("ignore")  # torch's deprecation notices would break the table
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; numpy {np.__version__} with OpenBLAS "
        f"kernels '{openblas_core()}'; torch {torch.__version__ if torch else 'not installed'} "
        f"({args.threads} threads)"
    )
    print(f"batch {args.batch}, median of {args.repeats} runs, times in ms\n")
    cols = ["layer", "shape", "fwd", "fwd+bwd", "torch fwd", "torch f+b", "ratio", "im2col f+b", "ratio"]
    widths = [8, 18, 7, 9, 10, 10, 7, 11, 7]
    header = "".join(f"{c:>{w}}" if i > 1 else f"{c:<{w}}" for i, (c, w) in enumerate(zip(cols, widths)))
    print("fwd, fwd+bwd: minifcn. torch: torch.nn.functional.conv2d (oneDNN). im2col: the same with oneDNN off,")
    print("torch's own im2col + matrix product path. ratio: minifcn's fwd+bwd time over torch's.\n")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    totals = [0.0, 0.0, 0.0]
    for name, C, OC, H in QUICK_SHAPES if args.shapes == "quick" else VGG16_SHAPES:
        x = rng.standard_normal((args.batch, C, H, H), dtype=np.float32)
        w = (rng.standard_normal((OC, C, 3, 3), dtype=np.float32) * 0.05).astype(np.float32)
        b = rng.standard_normal(OC, dtype=np.float32)
        gy = rng.standard_normal((args.batch, OC, H, H), dtype=np.float32)
        fwd, fb = minifcn_step(x, w, b, gy)
        ours_f, ours_fb = median_time(fwd, args.repeats), median_time(fb, args.repeats)
        totals[0] += ours_fb
        cells = f"{name:<8}{f'{C}->{OC} @ {H}x{H}':<18}{ours_f * 1e3:>7.1f}{ours_fb * 1e3:>9.1f}"
        if torch is not None:
            tf, tfb = torch_step(torch, x, w, b, gy)
            theirs_f, theirs_fb = median_time(tf, args.repeats), median_time(tfb, args.repeats)
            with torch.backends.mkldnn.flags(enabled=False):
                plain_fb = median_time(tfb, args.repeats)
            totals[1] += theirs_fb
            totals[2] += plain_fb
            cells += (
                f"{theirs_f * 1e3:>10.1f}{theirs_fb * 1e3:>10.1f}{ours_fb / theirs_fb:>6.2f}x"
                f"{plain_fb * 1e3:>11.1f}{ours_fb / plain_fb:>6.2f}x"
            )
        print(cells)
    if torch is not None:
        print("-" * len(header))
        print(
            f"{'total':<26}{'':>7}{totals[0] * 1e3:>9.1f}{'':>10}{totals[1] * 1e3:>10.1f}"
            f"{totals[0] / totals[1]:>6.2f}x{totals[2] * 1e3:>11.1f}{totals[0] / totals[2]:>6.2f}x"
        )

    if not args.no_memory and args.shapes == "vgg16":
        C, H = 64, 698
        x = rng.standard_normal((1, C, H, H), dtype=np.float32)
        w = (rng.standard_normal((C, C, 3, 3), dtype=np.float32) * 0.05).astype(np.float32)
        b = np.zeros(C, np.float32)
        gy = rng.standard_normal((1, C, H, H), dtype=np.float32)
        full_cols = C * 9 * H * H * 4
        tracemalloc.start()
        t0 = time.perf_counter()
        fwd, fb = minifcn_step(x, w, b, gy)
        fb()
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        budget = geometry.IM2COL_BUDGET_BYTES
        print(
            f"\nFCN conv1_2 on a 500x500 image: 64->64 @ {H}x{H}: full im2col buffer {full_cols / 2**30:.2f} GiB, "
            f"budget {budget / 2**20:.0f} MiB -> bands of output rows"
        )
        print(
            f"  forward + backward {seconds * 1e3:.0f} ms (one run, traced), peak traced memory "
            f"{peak / 2**20:.0f} MiB beyond the inputs ({x.nbytes / 2**20:.0f} MiB each for x and dY)"
        )


if __name__ == "__main__":
    main()
