"""The host's cost of one kernel launch: minifcn's own Python in ``minifcn.cuda.launch``.

    python benchmarks/bench_overhead.py [--repeats 20000]

On a GPU the host must not be what the GPU waits on: a small net's training
step makes ~70 launches, so every 100 microseconds of Python per launch is
7 ms a step. This times ``launch.launch`` on the CPU, with NumPy arrays
standing in for CuPy's and the compiled kernel replaced by a function that
does nothing, so what is measured is exactly minifcn's share: looking up the
signature, checking and converting every argument, choosing the grid. (CuPy's
own cost per launch, ~8 microseconds on an H200, comes on top on a GPU.)

Each kernel is timed with the arguments of a real call (an im2col of 17
arguments, a max pooling of 17, an average pooling's backward of 14); the
table gives the median of five blocks of ``--repeats`` / 5 calls, in
microseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from minifcn.cuda import launch  # noqa: E402


def _stand_ins() -> None:
    """NumPy arrays stand in for CuPy's: no compiling, every array on 'GPU 0', a launch that does nothing."""
    launch._function = lambda name, filename: lambda grid, block, args: None
    launch._device_id = lambda array: 0
    launch._current_device = lambda: 0


def _calls() -> dict[str, tuple]:
    f32 = np.float32
    x, cols = np.zeros((1, 64, 8, 8), f32), np.zeros((576, 64), f32)
    y, argmax = np.zeros((1, 64, 4, 4), f32), np.zeros((1, 64, 4, 4), np.int32)
    return {
        "im2col (17 arguments)": ("im2col", f32, cols.size, x, cols, 1, 64, 8, 8, 3, 3, 0, 8, 8, 1, 1, 1, 1, 1, 1),
        "max_pool_forward (17)": (
            "max_pool_forward",
            f32,
            y.size,
            x,
            y,
            argmax,
            1,
            64,
            8,
            8,
            4,
            4,
            2,
            2,
            2,
            2,
            0,
            0,
            1,
            1,
        ),
        "avg_pool_backward (14)": ("avg_pool_backward", f32, x.size, y, x, 1, 64, 8, 8, 4, 4, 2, 2, 2, 2, 0, 0),
    }


def _median_us(call: tuple, repeats: int) -> float:
    kernel, dtype, n, *args = call
    samples = []
    for _ in range(5):  # five blocks, the median of their per-call means
        t0 = time.perf_counter()
        for _ in range(repeats // 5):
            launch.launch(kernel, dtype, n, *args)
        samples.append((time.perf_counter() - t0) / (repeats // 5) * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20000)
    args = parser.parse_args(argv)
    _stand_ins()
    print("| kernel | minifcn's Python per launch (µs) |")
    print("|---|---|")
    for label, call in _calls().items():
        print(f"| {label} | {_median_us(call, args.repeats):.2f} |")


if __name__ == "__main__":
    main()
