"""Where a GPU training step's time goes: per op, per phase, and on the host.

    python benchmarks/profile_gpu.py [--size 500] [--quick-steps 50]

Three tables, each on the GPU (needs CuPy and a CUDA device):

1. **Per op, FCN-8s VGG16** (1x3xSxS, float32, SGD): every Function's forward
   and backward, the loss, and the optimiser's step, each timed with a
   device synchronise before and after, over one training step after two
   warm-up steps. Synchronising serialises the host and the GPU, so the sum
   is more than a real step takes; the shares say where the time goes.
2. **The quick preset's step**: ``python -m minifcn.train``'s own
   ``Loop.step`` (tiny-bn FCN-8s, 4x3x128x128 Shapes, Adam), the median over
   ``--quick-steps`` steps, with and without TF32, and the number of minifcn
   kernel launches per step. Target: at most 10 ms on an H100/H200.
3. **The host's share of that step**: the top functions by own time under
   cProfile, i.e. what the GPU waits on when the host is the bottleneck.
4. **The camvid preset's step**: its own ``Loop.step`` (its net, class
   weights and Adam) on batches of 4 random 480x360 images with labels in
   11 classes, the median over ``--camvid-steps`` steps, and the
   preset's iterations times that: the time its training loop should take,
   evaluation not counted.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_fcn import N_CLASS, build_minifcn  # noqa: E402

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn import autograd, loop, train  # noqa: E402
from minifcn.backend import cuda_available, set_tf32  # noqa: E402
from minifcn.config import PRESETS  # noqa: E402
from minifcn.cuda import launch  # noqa: E402
from minifcn.optim import SGD  # noqa: E402


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


class OpTimer:
    """Wraps every Function's forward and backward (and named extras) with synchronised wall-clock timing."""

    def __init__(self, cp):
        self.cp, self.totals, self.counts, self.saved = cp, collections.Counter(), collections.Counter(), []
        self.on = False

    def wrap(self, owner, attribute, label):
        original = getattr(owner, attribute)
        sync = self.cp.cuda.Device().synchronize

        def timed(*args, **kwargs):
            if not self.on:
                return original(*args, **kwargs)
            sync()
            t0 = time.perf_counter()
            result = original(*args, **kwargs)
            sync()
            self.totals[label] += time.perf_counter() - t0
            self.counts[label] += 1
            return result

        self.saved.append((owner, attribute, original))
        setattr(owner, attribute, timed)

    def install(self):
        for cls in set(_subclasses(autograd.Function)):
            for phase in ("forward", "backward"):
                if phase in cls.__dict__:
                    self.wrap(cls, phase, f"{cls.__name__}.{phase}")

    def remove(self):
        for owner, attribute, original in reversed(self.saved):
            setattr(owner, attribute, original)


def per_op_table(cp, size: int) -> None:
    model = build_minifcn().to("cuda")
    rng = np.random.default_rng(1)
    x = mf.Tensor(cp.asarray(rng.standard_normal((1, 3, size, size), dtype=np.float32)))
    labels = cp.asarray(rng.integers(0, N_CLASS, size=(1, size, size)))
    optimiser = SGD(model.parameters(), lr=1e-10, momentum=0.99)
    timer = OpTimer(cp)
    timer.install()
    timer.wrap(optimiser, "step", "optimiser.step")

    def step():
        model.train()
        optimiser.zero_grad()
        F.softmax_cross_entropy(model(x), labels).backward()
        optimiser.step()

    for _ in range(2):
        step()
    cp.cuda.Device().synchronize()
    timer.on = True
    t0 = time.perf_counter()
    step()
    cp.cuda.Device().synchronize()
    wall = time.perf_counter() - t0
    timer.remove()
    total = sum(timer.totals.values())
    print(f"## 1. Per op: FCN-8s VGG16, 1x3x{size}x{size}, one SGD step, synchronised around every call")
    print(
        f"(the step took {wall * 1e3:.1f} ms under the synchronisation; the ops below add up to {total * 1e3:.1f} ms)\n"
    )
    print("| op | calls | ms | share |")
    print("|---|---|---|---|")
    for label, seconds in timer.totals.most_common():
        print(f"| {label} | {timer.counts[label]} | {seconds * 1e3:.2f} | {seconds / total:.0%} |")
    print()


def quick_step_table(cp, steps: int) -> "loop.Loop":
    out = tempfile.mkdtemp(prefix="minifcn-profile-")
    run, _ = train.prepare(train.parse_config(["--device", "cuda", "--out", out, "--iters", str(steps + 10)]))
    launches = collections.Counter()
    original_launch = launch.launch

    def counting(kernel, *args, **kwargs):
        launches[kernel] += 1
        return original_launch(kernel, *args, **kwargs)

    print(
        "## 2. The quick preset's step (Loop.step: tiny-bn FCN-8s, 4x3x128x128, Adam; the loss read back each step)\n"
    )
    print("| TF32 | median ms per step | steps per second |")
    print("|---|---|---|")
    for tf32 in (False, True):
        set_tf32(tf32)
        for t in range(5):
            run.step(t)
        times = []
        for t in range(5, 5 + steps):
            t0 = time.perf_counter()
            run.step(t)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        print(f"| {'on' if tf32 else 'off'} | {median * 1e3:.2f} | {1 / median:.0f} |")
    set_tf32(False)
    launch.launch = counting
    run.step(0)
    launch.launch = original_launch
    print(
        f"\nminifcn kernel launches per step: {sum(launches.values())} ({dict(launches)}); CuPy's own "
        "elementwise and reduction kernels come on top\n"
    )
    return run


def camvid_step_table(steps: int, device: str = "cuda") -> float:
    """Table 4: the median seconds of the camvid preset's step at 480x360, and the loop's expected time."""
    out = tempfile.mkdtemp(prefix="minifcn-profile-")
    preset = PRESETS["camvid"]
    # A folder of two random 480x360 images in 11 classes stands in for CamVid (which stays on the machine it was
    # downloaded to): the net, its padding and fc6, the class weights and the optimiser are the preset's.
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for what in ("images", "labels"):
            os.makedirs(os.path.join(out, "data", split, what))
        for i in range(2):
            pixels = rng.integers(0, 256, size=(360, 480, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(out, "data", split, "images", f"{i}.png"))
            classes = rng.integers(0, 11, size=(360, 480), dtype=np.uint8)
            Image.fromarray(classes).save(os.path.join(out, "data", split, "labels", f"{i}.png"))
    argv = ["--preset", "camvid", "--dataset", "folder", "--data-root", os.path.join(out, "data"), "--n-class", "11"]
    run, _ = train.prepare(train.parse_config(argv + ["--device", device, "--out", out]), say=lambda line: None)
    x = rng.standard_normal((4, 3, 360, 480), dtype=np.float32)
    labels = rng.integers(0, 11, size=(4, 360, 480))
    times = []
    for t in range(3 + steps):
        t0 = time.perf_counter()
        run.step(t, batch=lambda _: (x, labels))  # the loss is read back each step: the step has ended
        times.append(time.perf_counter() - t0)
    median = statistics.median(times[3:])
    print(f"## 4. The camvid preset's step (4x3x360x480, random images, {device})\n")
    print("| median ms per step | preset's iterations | expected loop time |")
    print("|---|---|---|")
    print(f"| {median * 1e3:.1f} | {preset['iters']} | {median * preset['iters'] / 60:.1f} min |\n")
    return median


def host_profile(run, steps: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for t in range(steps):
        run.step(t)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
    print(f"## 3. The host's share of {steps} quick steps (cProfile, by own time)\n")
    print("```")
    print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])
    print("```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--quick-steps", type=int, default=50)
    parser.add_argument("--camvid-steps", type=int, default=20)
    args = parser.parse_args()
    if not cuda_available():
        sys.exit("profile_gpu.py: needs CuPy and a CUDA device; none here")
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.runtime.getDevice())
    print(f"device: {props['name'].decode()}; CuPy {cp.__version__}\n")
    per_op_table(cp, args.size)
    run = quick_step_table(cp, args.quick_steps)
    host_profile(run, 20)
    camvid_step_table(args.camvid_steps)


if __name__ == "__main__":
    main()
