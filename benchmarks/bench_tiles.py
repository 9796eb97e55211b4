"""Convolutions in tiles against one product per band, on the tiny nets' and VGG16's layer shapes.

    python benchmarks/bench_tiles.py [--shapes quick|vgg16] [--rounds 3] [--tiles 1,2,4]

On the CPU, ``minifcn.functional.cpu.tiles`` computes a convolution with at most
``TILE_MAX_CHANNELS`` output channels in tiles: a few output rows of one
image, padded, unfolded and multiplied while in a core's cache, the tiles
spread over the threads, BLAS on one thread in each. Any other convolution
builds its columns a band of up to ``IM2COL_BUDGET_BYTES`` at a time and
splits each product's columns over the same threads.

For each layer shape this prints the forward pass and the weight gradient
(ms, median over ``--rounds`` rounds, each timing every variant in turn, so
that a noisy machine slows all alike): in bands, and in tiles of each size in
``--tiles`` (MiB of columns per tile). ``quick``: the quick preset's 3x3
layers, batch 4 (conv1 at 326x326 after pad 100); ``vgg16``: FCN-8s VGG16's
on a 500x500 image, batch 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_conv import cpu_name, openblas_core  # noqa: E402

from minifcn.functional import conv  # noqa: E402
from minifcn.functional.cpu import threads, tiles  # noqa: E402

#: (N, C, OC, H = W): each a 3x3 convolution with padding 1.
SHAPES = {
    "quick": [(4, 4, 4, 326), (4, 8, 8, 163), (4, 32, 32, 82), (4, 64, 64, 41), (4, 128, 128, 21)],
    "vgg16": [(1, 64, 64, 698), (1, 128, 128, 349), (1, 256, 256, 175), (1, 512, 512, 88), (1, 512, 512, 44)],
}


def timed(fn, repeats: int = 3) -> float:
    """The median of ``repeats`` calls, in ms."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def one_shape(shape: tuple, tile_mib: list[float], rounds: int) -> dict:
    """{variant: (forward ms, weight-gradient ms)} for one layer shape, variants timed in turn each round."""
    N, C, OC, S = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, S, S), dtype=np.float32)
    w = rng.standard_normal((OC, C, 3, 3), dtype=np.float32)
    gy = rng.standard_normal((N, OC, S, S), dtype=np.float32)
    one = (1, 1)
    variants = {"bands": (0, tiles.TILE_BYTES)} | {f"tiles {m:g} MiB": (10**9, int(m * 2**20)) for m in tile_mib}
    results: dict[str, list] = {name: [] for name in variants}
    kept = tiles.TILE_MAX_CHANNELS, tiles.TILE_BYTES, tiles.TILE_MIN_BYTES
    try:
        tiles.TILE_MIN_BYTES = 0
        for _ in range(rounds):
            for name, (max_channels, tile_bytes) in variants.items():
                tiles.TILE_MAX_CHANNELS, tiles.TILE_BYTES = max_channels, tile_bytes
                forward = timed(lambda: conv._forward(x, w, None, one, one, one))
                weight = timed(lambda: conv._weight_grad(x, gy, (3, 3), one, one, one))
                results[name].append((forward, weight))
    finally:
        tiles.TILE_MAX_CHANNELS, tiles.TILE_BYTES, tiles.TILE_MIN_BYTES = kept
    return {name: tuple(statistics.median(r[i] for r in runs) for i in range(2)) for name, runs in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="quick")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiles", default="1,2,4", help="tile sizes in MiB, comma-separated")
    args = parser.parse_args()
    tile_mib = [float(t) for t in args.tiles.split(",")]
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; numpy {np.__version__}, OpenBLAS '{openblas_core()}'; "
        f"{threads.blas_threads()} threads; forward / weight gradient in ms, median of {args.rounds} rounds\n"
    )
    names = ["bands"] + [f"tiles {m:g} MiB" for m in tile_mib]
    print("| layer | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for shape in SHAPES[args.shapes]:
        N, C, OC, S = shape
        r = one_shape(shape, tile_mib, args.rounds)
        cells = " | ".join(f"{r[n][0]:.1f} / {r[n][1]:.1f}" for n in names)
        print(f"| {N}x{C}->{OC} @{S} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
