"""Two versions of minifcn, interleaved: the quick step, the camvid-cpu step and FCN-8s VGG16 at 500x500.

    python benchmarks/bench_versions.py --base DIR [--rounds 5] [--steps 8] [--kinds quick,camvid-cpu,vgg16]

``DIR`` is another checkout of minifcn (for example ``git worktree add
/tmp/base HEAD~3``); this checkout is "new". Each round runs every kind
once in each version, alternating (base, new, then new, base, ...), each in a
fresh process with that version first on the import path, so that a noisy
machine slows both alike. A worker reports the median of its timed runs:

- quick, camvid-cpu: ``python -m minifcn.train``'s own step (``train.prepare``,
  ``Loop.step``: forward, loss, backward, Adam), two warm-up steps, then ``--steps``;
- vgg16: FCN-8s on VGG16 (random weights, 21 classes) at 1x3x500x500:
  the forward pass (no graph) and a training pass (forward, loss, backward),
  one warm-up and two timed each, and the process's peak resident memory.

The table gives each side's median over the rounds and new / base.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NEW = os.path.dirname(HERE)
DEFAULT_CAMVID = os.path.join(NEW, "..", "shared", "data", "CamVid")


def _step_seconds(preset: str, steps: int, data_root: str) -> dict:
    from minifcn import train

    with tempfile.TemporaryDirectory() as out:
        argv = ["--preset", preset, "--out", out, "--device", "cpu"]
        if preset == "camvid-cpu":
            argv += ["--data-root", data_root]
        loop, _ = train.prepare(train.parse_config(argv), say=lambda message: None)
        seconds = []
        for t in range(steps + 2):
            t0 = time.perf_counter()
            loop.step(t)
            seconds.append(time.perf_counter() - t0)
    return {"step": statistics.median(seconds[2:])}


def _vgg16() -> dict:
    import numpy as np

    import minifcn as mf
    import minifcn.functional as F
    from minifcn.models import FCN8s

    mf.manual_seed(0)
    net = FCN8s(n_class=21, backbone="vgg16").train()
    x = np.random.default_rng(0).standard_normal((1, 3, 500, 500)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 21, (1, 500, 500))

    def forward():
        with mf.no_grad():
            net(mf.Tensor(x))

    def training():
        net.zero_grad()
        F.softmax_cross_entropy(net(mf.Tensor(x)), labels).backward()

    figures = {}
    for name, run in (("forward", forward), ("training", training)):
        run()
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        figures[name] = statistics.median(times)
    figures["peak GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return figures


def worker(kind: str, steps: int, data_root: str) -> None:
    figures = _vgg16() if kind == "vgg16" else _step_seconds(kind, steps, data_root)
    print(json.dumps(figures))


def run_worker(tree: str, kind: str, steps: int, data_root: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, HERE]))
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--steps", str(steps)]
    command += ["--data-root", data_root]
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="the other checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--kinds", default="quick,camvid-cpu,vgg16")
    parser.add_argument("--data-root", default=DEFAULT_CAMVID)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.data_root)
        return
    if not args.base:
        parser.error("--base DIR is needed")
    results: dict = {}
    for r in range(args.rounds):
        for kind in args.kinds.split(","):
            sides = [("base", os.path.abspath(args.base)), ("new", NEW)]
            for side, tree in sides if r % 2 == 0 else sides[::-1]:  # who goes first alternates by round
                figures = run_worker(tree, kind, args.steps, args.data_root)
                for name, value in figures.items():
                    results.setdefault((kind, name), {"base": [], "new": []})[side].append(value)
                print(f"round {r + 1} {kind} {side}: {figures}", file=sys.stderr, flush=True)
    print(f"{args.rounds} rounds, interleaved; medians (seconds, or GiB of peak memory)\n")
    print("| what | base | new | new / base | new / base, each round |\n|---|---|---|---|---|")
    for (kind, name), sides in results.items():
        base, new = statistics.median(sides["base"]), statistics.median(sides["new"])
        each = ", ".join(f"{n / b:.2f}" for b, n in zip(sides["base"], sides["new"]))
        print(f"| {kind} {name} | {base:.3f} | {new:.3f} | {new / base:.3f} | {each} |")


if __name__ == "__main__":
    main()
