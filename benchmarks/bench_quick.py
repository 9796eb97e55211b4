"""The first run, as a user runs it: `python -m minifcn.train` (the quick preset) over several seeds, and once in
float64. Does it end in the same place every time, and how long does it take?

    python benchmarks/bench_quick.py [--seeds 0 1 2 3 4] [--float64-seed 0] [--preset quick] [--out DIR]
                                     [--set FLAG=VALUE ...]

Each run is the command line in a process of its own, so its wall time (start-up, data, training, the
evaluations, the checkpoints) and its peak memory are what a user sees. ``--set`` passes more flags to every run
(``--set pad=69 --set iters=1200``): a recipe can be tried before it becomes the preset. The float64 run is the
same run with the weights and the inputs in float64: when its mean IU is far from float32's, the recipe's result
is decided by rounding.

Prints one row per run (seed, dtype, final and best val mean IU, wall seconds, peak resident memory), then the
spread (max - min) of the final mean IU over the float32 seeds, the float64 run's distance from its float32
twin, and the machine (CPU, cores, NumPy's float32 GEMM rate).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)


def worker(argv: list[str], float64: bool) -> None:
    """One training run in this process (``python -m minifcn.train`` with ``argv``), then its peak memory."""
    from minifcn import Tensor, cli, train

    if float64:
        prepare = train.prepare

        def prepare_in_float64(c, say=cli.say):  # the same run, the weights and every input in float64
            loop, heads = prepare(c, say)
            for p in loop.model.parameters():
                p.data = p.data.astype(np.float64)
            for name, buffer in loop.model.named_buffers():
                loop.model._set_buffer(name, np.asarray(buffer).astype(np.float64))
            forward = loop.model.forward  # every input, in training and in the evaluations, cast on the way in
            loop.model.forward = lambda x, *a, **k: forward(Tensor(x.data.astype(np.float64)), *a, **k)
            return loop, heads

        train.prepare = prepare_in_float64
    code = cli.run(train.main, argv)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    print(json.dumps({"code": code, "peak_mb": peak}))


def one_run(preset: str, seed: int, float64: bool, out: str, extra: list[str]) -> dict:
    argv = ["--preset", preset, "--seed", str(seed), "--out", out, *extra]
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps({"argv": argv, "float64": float64})]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_quick: the run {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with open(os.path.join(out, "log.csv"), newline="") as f:
        scored = [float(row["mean_iu"]) for row in csv.DictReader(f) if row["mean_iu"]]
    with open(os.path.join(out, "metrics.json")) as f:
        final = json.load(f)["mean_iu"]
    return {"seed": seed, "dtype": "float64" if float64 else "float32", "final": final, "best": max(scored),
            "wall": wall, "peak_mb": result["peak_mb"]}  # fmt: skip


def machine() -> str:
    cpu = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    a = np.ones((2048, 2048), np.float32)
    a @ a
    times = []
    for _ in range(3):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    gemm = 2 * 2048**3 / np.median(times) / 1e9
    return f"{cpu}, {os.cpu_count()} cores, NumPy {np.__version__}, float32 GEMM {gemm:.0f} GFLOP/s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--float64-seed", type=int, default=0, help="the seed also run in float64 (-1: none)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--out", help="where the runs write (default: a temporary folder)")
    p.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE", help="a flag for every run: iters=1200")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        return worker(spec["argv"], spec["float64"])
    extra = [part for item in args.set for part in ("--" + item.split("=", 1)[0], item.split("=", 1)[1])]
    out = args.out or tempfile.mkdtemp(prefix="bench_quick_")
    plan = [(s, False) for s in args.seeds] + ([(args.float64_seed, True)] if args.float64_seed >= 0 else [])
    print(f"{time.strftime('%Y-%m-%d')}: python -m minifcn.train --preset {args.preset} {' '.join(extra)}")
    print(f"{'seed':>4} {'dtype':>8} {'final mean IU':>14} {'best mean IU':>13} {'wall s':>7} {'peak MB':>8}")
    rows = []
    for seed, float64 in plan:
        r = one_run(args.preset, seed, float64, os.path.join(out, f"seed{seed}{'_f64' if float64 else ''}"), extra)
        rows.append(r)
        print(
            f"{seed:>4} {r['dtype']:>8} {r['final']:>14.4f} {r['best']:>13.4f} {r['wall']:>7.0f} {r['peak_mb']:>8.0f}"
        )
    finals = [r["final"] for r in rows if r["dtype"] == "float32"]
    print(f"float32 final mean IU: {min(finals):.4f} to {max(finals):.4f}, spread {max(finals) - min(finals):.4f}; "
          f"median wall {np.median([r['wall'] for r in rows if r['dtype'] == 'float32']):.0f} s")  # fmt: skip
    for r in rows:
        if r["dtype"] == "float64":
            twin = next((q for q in rows if q["dtype"] == "float32" and q["seed"] == r["seed"]), None)
            if twin is not None:
                print(f"seed {r['seed']}: float64 {r['final']:.4f} against float32 {twin['final']:.4f} "
                      f"(|difference| {abs(r['final'] - twin['final']):.4f})")  # fmt: skip
    print(machine())


if __name__ == "__main__":
    main()
