"""Time FCN-8s (VGG16) on a 1x3x500x500 image on the GPU: minifcn (CuPy) beside PyTorch (cuDNN).

    python benchmarks/bench_gpu.py [--repeats 20] [--warmup 3] [--size 500]

Needs CuPy and a CUDA device. The network is the one of bench_fcn.py: random
He-scaled weights, score layers made random too, the same weights copied into
the PyTorch version (when torch is importable).

    forward     one pass in evaluation mode without gradients
    train step  forward with dropout, the mean softmax loss over random labels,
                backward, and an SGD update (momentum 0.99), as the paper trains

Times are CUDA-event times (GPU time from the first launch to the last, the
host's work in between included), the median of ``--repeats`` runs after
``--warmup`` runs; minifcn and both torch settings are interleaved run by run,
so that their ratios are measured under the same conditions. PyTorch runs in
float32 with cuDNN, once with TF32 off (the fair comparison: minifcn computes
in full float32, as minifcn leaves TF32 off by default) and once with TF32 on;
minifcn likewise runs without and with TF32 (``minifcn.backend.set_tf32``),
and the script prints how far TF32 moves each one's forward output.

Memory: the peak of the bytes in use during one pass, weights, gradients and
momentum included: from CuPy's memory pool for minifcn (every allocation goes
through it), from torch.cuda.max_memory_allocated for PyTorch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_fcn import N_CLASS, build_minifcn, build_torch  # noqa: E402

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn.backend import cuda_available, set_tf32  # noqa: E402
from minifcn.optim import SGD  # noqa: E402


def minifcn_passes(cp, model, x, labels):
    """(forward, train_step) for minifcn on the GPU."""
    tx = mf.Tensor(cp.asarray(x))
    tl = cp.asarray(labels)
    optimiser = SGD(model.parameters(), lr=1e-10, momentum=0.99)

    def forward():
        model.eval()
        with mf.no_grad():
            return model(tx).data

    def train_step():
        model.train()
        optimiser.zero_grad()
        F.softmax_cross_entropy(model(tx), tl).backward()
        optimiser.step()

    return forward, train_step


def torch_passes(torch, model, x, labels):
    """(forward, train_step) for the PyTorch network on the GPU."""
    tx, tl = torch.from_numpy(x).cuda(), torch.from_numpy(labels.astype(np.int64)).cuda()
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-10, momentum=0.99)

    def forward():
        model.eval()
        with torch.no_grad():
            return model(tx)

    def train_step():
        model.train()
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(tx), tl, ignore_index=255).backward()
        optimiser.step()

    return forward, train_step


def event_timer(cp, tf32: bool = False):
    """ms of GPU time for fn(), measured with CUDA events on the current stream; TF32 set as asked first."""

    def time_ms(fn) -> float:
        set_tf32(tf32)
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return cp.cuda.get_elapsed_time(start, end)

    return time_ms


def torch_timer(torch, tf32: bool):
    def time_ms(fn) -> float:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    return time_ms


def cupy_peak_bytes(cp, fn) -> int:
    """The most bytes CuPy's pool had in use at once while fn() ran."""
    pool = cp.get_default_memory_pool()
    peak = [pool.used_bytes()]

    class Peak(cp.cuda.MemoryHook):
        name = "peak"

        def malloc_postprocess(self, **kwargs):
            peak[0] = max(peak[0], pool.used_bytes())

    with Peak():
        fn()
        cp.cuda.Device().synchronize()
    return peak[0]


def torch_peak_bytes(torch, fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--size", type=int, default=500)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if not cuda_available():
        sys.exit("bench_gpu.py: needs CuPy and a CUDA device; none here")
    import cupy as cp

    try:
        import torch

        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None

    S = args.size
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.runtime.getDevice())
    print(
        f"device: {props['name'].decode()}; CuPy {cp.__version__}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}; "
        "torch " + (f"{torch.__version__} (cuDNN {torch.backends.cudnn.version()})" if torch else "not available")
    )
    print(
        f"FCN-8s, VGG16 backbone, {N_CLASS} classes, input 1x3x{S}x{S} float32; CUDA-event times, "
        f"median of {args.repeats} runs after {args.warmup} warm-ups\n"
    )

    ours = build_minifcn()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, S, S), dtype=np.float32)
    labels = rng.integers(0, N_CLASS, size=(1, S, S))
    runs = {}  # label -> (timer, forward, train_step)
    if torch is not None:
        theirs = build_torch(torch, ours).cuda()
        forward, step = torch_passes(torch, theirs, x, labels)
        runs["torch fp32 (TF32 off)"] = (torch_timer(torch, False), forward, step)
        runs["torch fp32 (TF32 on)"] = (torch_timer(torch, True), forward, step)
    ours.to("cuda")
    forward, step = minifcn_passes(cp, ours, x, labels)
    runs = {
        "minifcn (CuPy)": (event_timer(cp), forward, step),
        "minifcn (CuPy, TF32)": (event_timer(cp, tf32=True), forward, step),
        **runs,
    }

    # Agreement of the forward outputs (before any update), and what TF32 moves.
    def relative(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    set_tf32(False)
    ours_out = cp.asnumpy(forward())
    set_tf32(True)
    ours_tf32 = cp.asnumpy(forward())
    set_tf32(False)
    print(
        f"forward outputs: minifcn with TF32 differs from minifcn without by {relative(ours_tf32, ours_out):.1e} "
        "of the largest score"
    )
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        theirs_out = runs["torch fp32 (TF32 off)"][1]().cpu().numpy()
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        theirs_tf32 = runs["torch fp32 (TF32 on)"][1]().cpu().numpy()
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        print(
            f"forward outputs: minifcn differs from torch (TF32 off) by {relative(ours_out, theirs_out):.1e}; "
            f"torch with TF32 from torch without by {relative(theirs_tf32, theirs_out):.1e}"
        )
    print()

    memory = {}
    for label, (timer, forward, step) in runs.items():
        if label.startswith("minifcn"):
            memory[label] = (cupy_peak_bytes(cp, forward), cupy_peak_bytes(cp, step))
        elif "off" in label:
            memory[label] = (torch_peak_bytes(torch, forward), torch_peak_bytes(torch, step))

    times = {label: {"forward": [], "step": []} for label in runs}
    for case, index in (("forward", 1), ("step", 2)):
        for _ in range(args.warmup):
            for label, run in runs.items():
                run[0](run[index])
        for _ in range(args.repeats):
            for label, run in runs.items():  # interleaved
                times[label][case].append(run[0](run[index]))

    header = f"{'':<24}{'forward (ms)':>14}{'train step (ms)':>17}{'fwd peak (MiB)':>16}{'step peak (MiB)':>17}"
    print(header)
    print("-" * len(header))
    med = {label: {case: statistics.median(t) for case, t in cases.items()} for label, cases in times.items()}
    for label in runs:
        fwd_mem, step_mem = (f"{b / 2**20:.0f}" for b in memory[label]) if label in memory else ("-", "-")
        mem = f"{fwd_mem:>16}{step_mem:>17}"
        print(f"{label:<24}{med[label]['forward']:>14.2f}{med[label]['step']:>17.2f}{mem}")
    pairs = (("minifcn (CuPy)", "torch fp32 (TF32 off)"), ("minifcn (CuPy, TF32)", "torch fp32 (TF32 on)"))
    for ours_label, label in pairs:
        if label in runs:
            name = "minifcn / torch" + (" (TF32)" if "TF32)" in ours_label else "")
            print(
                f"{name:<24}{med[ours_label]['forward'] / med[label]['forward']:>13.2f}x"
                f"{med[ours_label]['step'] / med[label]['step']:>16.2f}x"
            )
    if "torch fp32 (TF32 off)" in memory:
        ratio = memory["minifcn (CuPy)"][1] / memory["torch fp32 (TF32 off)"][1]
        print(f"step peak memory, minifcn / torch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
