"""One training step of a preset, in minifcn and in its PyTorch twin, interleaved on the same threads.

    python benchmarks/bench_step.py [--preset quick|camvid-cpu|camvid] [--steps 15] [--data-root DIR] [--threads N]

The minifcn side is ``python -m minifcn.train``'s own step (``train.prepare``
builds the run as the command does; ``Loop.step`` runs forward, loss,
backward and Adam). The twin is the same step in PyTorch (float32, its
default oneDNN convolutions, ``torch.set_num_threads`` equal to NumPy's BLAS
threads): the same network with every weight and batch-norm buffer copied
from minifcn's before the first step (``bench_fcn.build_torch``), the same
batch for every step (each batch is drawn once from the run's loader and
handed to both), the same loss (mean per-pixel cross-entropy, void ignored,
the preset's class weights) and the same Adam (biases at twice the rate,
the preset's schedule).

Both start from the same weights, so their first losses must agree (to
1e-5, checked); after that their rounding differs and they drift apart, as
two PyTorch runs on different hardware would. Each side's time per step is
the median over ``--steps`` steps after two warm-up steps, the two sides
alternating step by step so that a noisy machine slows both alike.

Presets: ``quick`` (tiny-bn FCN-8s, Shapes, batches of 4 at 128x128),
``camvid-cpu`` (the same net on whole 480x360 CamVid images, batches of 4,
ENet's class weights; needs ``--data-root``, by default
``../shared/data/CamVid``) and ``camvid`` (the same on the small-bn trunk).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_conv import cpu_name, openblas_core  # noqa: E402
from bench_fcn import build_torch  # noqa: E402

from minifcn import train  # noqa: E402

DEFAULT_CAMVID = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "CamVid")


def blas_threads() -> int:
    """The threads NumPy's OpenBLAS uses: OPENBLAS_NUM_THREADS or OMP_NUM_THREADS if set, else every core."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return os.cpu_count() or 1


def torch_twin(torch, loop, class_weights):
    """A function ``step(t, x, labels) -> loss`` training a PyTorch copy of ``loop``'s model as ``loop`` does."""
    ours = loop.model
    net = build_torch(torch, ours).train()
    kinds = {name: (p.lr_mult, p.decay_mult) for name, p in ours.named_parameters()}
    groups: dict[tuple, list] = {}
    for name, p in net.named_parameters():
        if p.requires_grad:
            groups.setdefault(kinds[name.split(".", 1)[1]], []).append(p)
    decay = loop.optimizer.weight_decay
    optimiser = torch.optim.Adam(
        [{"params": ps, "mult": m, "weight_decay": decay * d} for (m, d), ps in groups.items()],
        betas=loop.optimizer.betas,
        eps=loop.optimizer.eps,
    )
    weight = None if class_weights is None else torch.from_numpy(class_weights.astype(np.float32))

    def step(t: int, x: np.ndarray, labels: np.ndarray) -> float:
        for group in optimiser.param_groups:
            group["lr"] = loop.lr(t) * group["mult"]
        scores = net(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(scores, torch.from_numpy(labels), weight=weight, ignore_index=255)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.item())
        optimiser.step()
        return value

    return step


def twin_steps(preset: str, steps: int, data_root: str | None, threads: int) -> dict:
    """Time ``steps`` interleaved training steps of ``preset`` in minifcn and PyTorch; returns the figures."""
    import torch

    torch.set_num_threads(threads)
    quiet = lambda message: None  # noqa: E731
    with tempfile.TemporaryDirectory() as out:
        argv = ["--preset", preset, "--out", out, "--device", "cpu"]
        if data_root:
            argv += ["--data-root", data_root]
        c = train.parse_config(argv)
        loop, heads = train.prepare(c, say=quiet)
        _, train_set, _, _ = train.load_data(c)
        class_weights = train.choose_class_weights(c, train_set, heads, quiet)
        twin = torch_twin(torch, loop, class_weights)  # copied before minifcn's first step

        batches: dict = {}
        draw = loop.batch
        loop.batch = lambda t: batches.setdefault(t, draw(t))  # each batch drawn once, handed to both
        seconds: dict[str, list[float]] = {"minifcn": [], "torch": []}
        losses: dict[str, list[float]] = {"minifcn": [], "torch": []}
        for t in range(steps + 2):
            t0 = time.perf_counter()
            losses["minifcn"].append(loop.step(t))
            seconds["minifcn"].append(time.perf_counter() - t0)
            x, labels = batches.pop(t)
            t0 = time.perf_counter()
            losses["torch"].append(twin(t, x, labels.astype(np.int64)))
            seconds["torch"].append(time.perf_counter() - t0)
    first = losses["minifcn"][0], losses["torch"][0]
    if abs(first[0] - first[1]) > 1e-5 * max(1.0, abs(first[1])):
        raise SystemExit(f"the twins differ at the first step: losses {first[0]:.7f} and {first[1]:.7f}")
    median = {k: statistics.median(v[2:]) for k, v in seconds.items()}
    return {
        "preset": preset,
        "shape": x.shape,
        "first losses": first,
        "median": median,
        "ratio": median["minifcn"] / median["torch"],
    }


def report(r: dict) -> None:
    N, C, H, W = r["shape"]
    print(
        f"preset {r['preset']}: batches of {N}x{C}x{H}x{W}; first losses {r['first losses'][0]:.6f} (minifcn), "
        f"{r['first losses'][1]:.6f} (torch)"
    )
    print(
        f"| | ms per step |\n|---|---|\n| minifcn | {r['median']['minifcn'] * 1e3:.0f} |\n"
        f"| torch (oneDNN) | {r['median']['torch'] * 1e3:.0f} |\n| ratio | {r['ratio']:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("quick", "camvid-cpu", "camvid"), default="quick")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--data-root", help="CamVid's folder for the camvid presets")
    parser.add_argument("--threads", type=int, default=blas_threads())
    args = parser.parse_args()
    root = args.data_root or (DEFAULT_CAMVID if args.preset.startswith("camvid") else None)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; numpy {np.__version__}, OpenBLAS '{openblas_core()}'; "
        f"{args.threads} threads each; median of {args.steps} steps after 2 warm-up steps\n"
    )
    report(twin_steps(args.preset, args.steps, root, args.threads))


if __name__ == "__main__":
    main()
