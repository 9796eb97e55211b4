"""Where a CPU pass's time goes: per op, and inside or outside the matrix products.

    python benchmarks/profile_cpu.py [--size 500] [--repeats 3] [--quick-steps 15]

Two profiles, on the CPU, with the threads NumPy's BLAS has:

1. **FCN-8s VGG16 on one 1x3xSxS image**: the forward pass (evaluation,
   no gradients) and a training pass (forward with dropout, the mean loss,
   backward), each the median over ``--repeats`` runs of every entry.
2. **The quick preset's training step**: tiny-bn FCN-8s (with the preset's
   padding and upsampling) on a batch of 4x3x128x128 Shapes, the mean loss and Adam, as ``python -m minifcn.train``
   runs it, over ``--quick-steps`` steps.

Every Function's forward and backward is timed (wall clock), and so are the
pieces inside the convolutions that the profile can see by name: the matrix
products, im2col, col2im, padding and layout copies. The
rows add up to the pass: "autograd and the rest" is the pass's time minus
everything timed below it (the graph's own Python, allocation of Tensors,
the loss's labels check, ...). "MiB" is what each row's calls read and wrote
at least (their inputs and outputs, once), so a row's MiB/s says how near
it runs to the memory's speed.

The split that matters for speed: "inside the products" (BLAS at its GEMM
rate, printed at the top) against everything else. The few-channel
convolutions run in tiles on all the threads, each unfolding and multiplying
in turn, so their rows ("tiles: ...") hold both and are counted apart. Work
split over the threads (``threads.by_parts``, the calling thread's share
included) is timed only as part of the row that waits for it.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_conv import cpu_name, openblas_core  # noqa: E402
from bench_fcn import N_CLASS, build_minifcn, gemm_rates  # noqa: E402

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn import autograd, optim  # noqa: E402
from minifcn.config import QUICK  # noqa: E402
from minifcn.functional import conv  # noqa: E402
from minifcn.functional.cpu import flat, padding_skip, threads, tiles  # noqa: E402
from minifcn.functional.cpu import pool as cpu_pool  # noqa: E402
from minifcn.models import FCN8s  # noqa: E402

#: Helpers inside the ops, timed by name where the module has them: (module, attribute, row label).
INNER = [
    (tiles, "forward", "  tiles: columns and products, forward"),
    (tiles, "weight_grad", "  tiles: columns and products, weight gradient"),
    (flat, "im2col_flat", "  im2col_flat (bands)"),
    (conv, "im2col", "  im2col (reference)"),
    (conv, "col2im", "  col2im (reference)"),
    (flat, "pad2d", "  padding (flat columns)"),
    (padding_skip, "forward", "  windows in the padding: the rest"),
    (conv, "channel_sum", "  bias gradients"),
    (cpu_pool, "first_maximum", "  max pooling's argmax"),
]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _nbytes(values) -> int:
    total = 0
    for v in values:
        if isinstance(v, (tuple, list)):
            total += _nbytes(v)
        elif hasattr(v, "nbytes"):
            total += v.nbytes
    return total


class Profile:
    """Wall-clock time and bytes per label, with nested rows subtracted from the row around them."""

    def __init__(self):
        self.seconds, self.bytes, self.calls = collections.Counter(), collections.Counter(), collections.Counter()
        self.saved, self.stack = [], []
        self.splitting = 0  # > 0 inside threads.by_parts: its parts are the waiting row's time

    def split(self):
        """threads.by_parts, with the rows inside its parts left untimed (the calling thread runs one part)."""
        original = threads.by_parts

        def untimed_parts(*args, **kwargs):
            self.splitting += 1
            try:
                return original(*args, **kwargs)
            finally:
                self.splitting -= 1

        self.saved.append((threads, "by_parts", original))
        threads.by_parts = untimed_parts

    def wrap(self, owner, attribute, label):
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread() or self.splitting:
                return original(*args, **kwargs)  # a part of a split pass: the row that waits for it holds it
            self.stack.append(0.0)
            t0 = time.perf_counter()
            result = original(*args, **kwargs)
            elapsed = time.perf_counter() - t0
            inner = self.stack.pop()
            if self.stack:
                self.stack[-1] += elapsed
            self.seconds[label] += elapsed - inner
            self.bytes[label] += _nbytes(args) + _nbytes((result,))
            self.calls[label] += 1
            return result

        self.saved.append((owner, attribute, original))
        setattr(owner, attribute, timed)

    def install(self, extra=()):
        for cls in set(_subclasses(autograd.Function)):
            for phase in ("forward", "backward"):
                if phase in cls.__dict__:
                    self.wrap(cls, phase, f"{cls.__name__}.{phase}")
        for owner, attribute, label in list(INNER) + list(extra):
            if hasattr(owner, attribute):
                self.wrap(owner, attribute, label)
        self.split()
        return self

    def remove(self):
        for owner, attribute, original in reversed(self.saved):
            setattr(owner, attribute, original)

    def reset(self):
        self.seconds.clear(), self.bytes.clear(), self.calls.clear()


def profiled(fn, repeats: int, extra=()) -> tuple[dict, dict, dict, float]:
    """Median seconds, bytes and calls per label over ``repeats`` runs of ``fn``, and the median wall time."""
    fn()  # warm-up
    prof = Profile().install(extra)
    runs, walls = [], []
    try:
        for _ in range(repeats):
            prof.reset()
            t0 = time.perf_counter()
            fn()
            walls.append(time.perf_counter() - t0)
            runs.append((dict(prof.seconds), dict(prof.bytes), dict(prof.calls)))
    finally:
        prof.remove()
    labels = set().union(*(r[0] for r in runs))
    seconds = {k: statistics.median(r[0].get(k, 0.0) for r in runs) for k in labels}
    return seconds, runs[0][1], runs[0][2], statistics.median(walls)


def print_table(title: str, seconds: dict, nbytes: dict, calls: dict, wall: float) -> None:
    products = seconds.get("  matrix products", None)
    rest = wall - sum(seconds.values())
    print(f"### {title}: {wall:.3f} s\n")
    print("| op | calls | s | share | MiB | GB/s |")
    print("|---|---|---|---|---|---|")
    for label in sorted(seconds, key=lambda k: -seconds[k]):
        s = seconds[label]
        if s < 0.001 * wall:
            continue
        mib = nbytes.get(label, 0) / 2**20
        rate = f"{nbytes.get(label, 0) / s / 1e9:.1f}" if s > 0 and label != "  matrix products" else ""
        print(f"| {label.strip()} | {calls.get(label, 0)} | {s:.3f} | {s / wall:.1%} | {mib:.0f} | {rate} |")
    print(f"| autograd and the rest | | {rest:.3f} | {rest / wall:.1%} | | |")
    if products is not None:
        tiles = sum(v for k, v in seconds.items() if k.startswith("  tiles"))
        rest = wall - products - tiles
        print(
            f"\ninside the matrix products: {products:.3f} s ({products / wall:.1%}); in the tiles (their columns "
            f"and products together, on the cores): {tiles:.3f} s ({tiles / wall:.1%}); everything else: "
            f"{rest:.3f} s ({rest / wall:.1%})"
        )
    print()


def fcn_profile(size: int, repeats: int) -> None:
    model = build_minifcn()
    rng = np.random.default_rng(1)
    x = mf.Tensor(rng.standard_normal((1, 3, size, size), dtype=np.float32))
    labels = rng.integers(0, N_CLASS, size=(1, size, size))

    def forward():
        model.eval()
        with mf.no_grad():
            model(x)

    def training_pass():
        model.train()
        F.softmax_cross_entropy(model(x), labels).backward()
        model.zero_grad()

    print(f"## 1. FCN-8s VGG16, 1x3x{size}x{size} float32, median of {repeats}\n")
    print_table("forward", *profiled(forward, repeats))
    print_table("training pass (forward, loss, backward)", *profiled(training_pass, repeats))


def quick_profile(steps: int) -> None:
    mf.manual_seed(0)
    geometry = dict(pad=QUICK["pad"], fc6_kernel=QUICK["fc6_kernel"])
    model = FCN8s(n_class=6, backbone="tiny-bn", learnable_upsampling=QUICK["learnable_upsampling"], **geometry)
    rng = np.random.default_rng(0)
    x = mf.Tensor(rng.standard_normal((4, 3, 128, 128), dtype=np.float32))
    labels = rng.integers(0, 6, size=(4, 128, 128))
    optimiser = optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, QUICK["beta2"]))

    def step():
        model.train()
        optimiser.zero_grad()
        F.softmax_cross_entropy(model(x), labels).backward()
        optimiser.step()

    fc6 = QUICK["fc6_kernel"]
    print(
        f"## 2. The quick preset's step: tiny-bn FCN-8s (fc6 {fc6}x{fc6}, pad {QUICK['pad']}), 4x3x128x128, Adam, "
        f"median of {steps}\n"
    )
    print_table("training step", *profiled(step, steps, extra=[(optimiser, "step", "optimiser.step")]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick-steps", type=int, default=15)
    parser.add_argument("--skip-fcn", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; numpy {np.__version__}, OpenBLAS '{openblas_core()}'; "
        f"float32 GEMM {gemm_rates(None)['numpy']:.0f} GFLOP/s (2048^3)\n"
    )
    if not args.skip_fcn:
        fcn_profile(args.size, args.repeats)
    quick_profile(args.quick_steps)


if __name__ == "__main__":
    main()
