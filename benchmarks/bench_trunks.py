"""Table 1 of the paper: FCN-32s on three classifier trunks, AlexNet, VGG16 and GoogLeNet.

    python benchmarks/bench_trunks.py [--repeats 3] [--size 500] [--device cpu|cuda]

For each trunk: the forward time of FCN-32s (21 classes) on one 1x3xSxS
float32 image in evaluation mode (median of ``--repeats`` runs after one
warm-up, the three trunks interleaved), the trunk's parameters (score and
upsampling layers not counted), its convolution layers (the depth, counting
the score layer as the paper does), and the receptive field of its last
layer, beside the paper's figures for the same columns. The paper timed a
2014 NVIDIA GPU (Caffe); this machine's figures are only comparable among
themselves.
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

from bench_conv import cpu_name  # noqa: E402

import minifcn as mf  # noqa: E402
import minifcn.nn as nn  # noqa: E402
from minifcn import receptive  # noqa: E402
from minifcn.backend import to_device  # noqa: E402
from minifcn.models import FCN32s  # noqa: E402

#: Table 1 of the paper: mean IU (VOC 2011 val), forward time (ms, 500x500, GPU), conv layers,
#: parameters (millions), receptive field, max stride.
PAPER = {
    "alexnet": (39.8, 50, 8, 57, 355, 32),
    "vgg16": (56.0, 210, 16, 134, 404, 32),
    "googlenet": (42.5, 59, 22, 6, 907, 32),
}


def depth(model: FCN32s) -> int:
    """Convolution layers on the longest path, the score layer included (an inception module counts 2)."""
    layers = [getattr(model, name) for name in model.trunk_names]
    return sum(2 if isinstance(m, nn.Inception) else 1 for m in layers if isinstance(m, (nn.Conv2d, nn.Inception))) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    S = args.size
    synchronize = lambda: None  # noqa: E731
    if args.device == "cuda":
        import cupy

        synchronize = cupy.cuda.Device().synchronize  # noqa: E731
    where = cpu_name() if args.device == "cpu" else "CUDA device"
    print(
        f"machine: {where}, {os.cpu_count()} cores; FCN-32s, 21 classes, input 1x3x{S}x{S} float32, "
        f"evaluation mode; median of {args.repeats} runs after one warm-up\n"
    )

    mf.manual_seed(0)
    x = to_device(np.random.default_rng(1).standard_normal((1, 3, S, S), dtype=np.float32), args.device)
    models, rows = {}, {}
    for backbone in PAPER:
        model = FCN32s(n_class=21, backbone=backbone).eval().to(args.device)
        models[backbone] = model
        trunk = sum(p.size for name, p in model.named_parameters() if not name.startswith(("score_fr", "upscore")))
        field = receptive.trace(model)[model.trunk_names[-1]].field
        rows[backbone] = {
            "params": trunk / 1e6,
            "depth": depth(model),
            "field": int(field.size),
            "stride": int(field.jump),
        }

    times: dict[str, list[float]] = {b: [] for b in models}
    with mf.no_grad():
        for model in models.values():
            model(mf.Tensor(x))
        for _ in range(args.repeats):
            for backbone, model in models.items():  # interleaved
                synchronize()
                t0 = time.perf_counter()
                model(mf.Tensor(x))
                synchronize()
                times[backbone].append(time.perf_counter() - t0)

    header = (
        f"{'':<16}{'forward (ms)':>13}{'paper (ms)':>11}{'conv layers':>12}{'paper':>6}"
        f"{'params (M)':>11}{'paper':>6}{'rf size':>8}{'paper':>6}{'stride':>7}{'paper mean IU':>15}"
    )
    print(header)
    print("-" * len(header))
    for backbone, r in rows.items():
        iu, ms, layers, params, field, stride = PAPER[backbone]
        print(
            f"{'FCN-' + backbone:<16}{statistics.median(times[backbone]) * 1e3:>13.0f}{ms:>11}"
            f"{r['depth']:>12}{layers:>6}"
            f"{r['params']:>11.1f}{params:>6}{r['field']:>8}{field:>6}{r['stride']:>7}{iu:>15}"
        )
    print("\nrf size: the field of the trunk's last layer. GoogLeNet's 907 in the paper counts the 7x7 average")
    print("pooling that the FCN drops (715 + 6 * 32 = 907).")


if __name__ == "__main__":
    main()
