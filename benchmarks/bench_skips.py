"""The paper's finding about skips (Sec. 4.2, Table 2), on Shapes: FCN-32s, FCN-16s, FCN-8s with one budget.

Each net (tiny-bn backbone, from scratch) trains with the quick preset's
settings for the same number of iterations, then is scored on Shapes val.
All three pad conv1 by the paper's 100 and keep the classifier's 7x7 fc6, so
that they differ in their skips alone (the preset's pad 21 is the least for
its FCN-8s with a 4x4 fc6; FCN-16s and FCN-32s would need 25 and 33).
Prints one table: pixel accuracy, mean IU, and the IU of the thin classes
(ring, bar), where the finer skips should help most.

    python benchmarks/bench_skips.py [--iters 400] [--out runs/skips]   # about 7 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import time

from minifcn import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--out", default="runs/skips")
    p.add_argument("--models", default="fcn32s,fcn16s,fcn8s")
    args = p.parse_args()
    rows = []
    for model in args.models.split(","):
        out = os.path.join(args.out, model)
        argv = [
            "--model",
            model,
            "--iters",
            str(args.iters),
            "--eval-every",
            str(args.iters),
            "--checkpoint-every",
            str(args.iters),
            "--out",
            out,
            "--pad",
            "100",
            "--fc6-kernel",
            "7",
        ]
        t0 = time.perf_counter()
        train.main(argv)
        with open(os.path.join(out, "metrics.json")) as f:
            m = json.load(f)
        rows.append((model, m["pixel_acc"], m["mean_iu"], m["iu"]["ring"], m["iu"]["bar"], time.perf_counter() - t0))
    print(f"\n{'model':<8} {'pixel acc':>9} {'mean IU':>8} {'ring IU':>8} {'bar IU':>7} {'seconds':>8}")
    for model, pa, miu, ring, bar, secs in rows:
        print(f"{model:<8} {pa:>9.4f} {miu:>8.4f} {ring or 0:>8.4f} {bar or 0:>7.4f} {secs:>8.0f}")


if __name__ == "__main__":
    main()
