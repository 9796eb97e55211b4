"""The twin benchmark: the same FCN-8s trained on CamVid in minifcn and in PyTorch, then scored alike.

    python benchmarks/bench_camvid.py [--data-root ../shared/data/CamVid] [--iters 300] [--crop-size 224]
                                      [--batch-size 4] [--lr 0.01] [--device cpu|cuda] [--val-limit N]

Both sides get exactly the same run:

- the network: minifcn's ``FCN8s(11, backbone)`` (tiny-bn by default), its score
  layers made random as the presets do, and every weight, bias and batch-norm
  buffer copied into the PyTorch version (``bench_fcn.build_torch``);
- the data: minifcn's ``BatchLoader`` over the training split (random flips
  and crops, torchvision's normalisation), each batch handed to both;
- the loss: per-pixel cross-entropy, void ignored, median-frequency class
  weights from the training labels, 'mean' over the summed weights;
- the optimiser: Adam, the biases at twice the rate (minifcn's ``lr_mult``),
  fixed bilinear upsampling, 50 iterations of warm-up then poly decay.

Then both are scored on the validation split (whole 480x360 images) with
minifcn's metrics (``minifcn.metrics``): mean IU, class-average accuracy,
pixel accuracy, per-class IU, and the seconds each side took to train. The
target: minifcn's mean IU at least 0.97 of PyTorch's. At the end, the
per-iteration time ratio of this run and of the camvid-cpu preset's own
step (whole 480x360 images, batch 4; ``bench_step.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_fcn import build_torch  # noqa: E402
from bench_step import blas_threads, report, twin_steps  # noqa: E402

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn.backend import to_device  # noqa: E402
from minifcn.data import Augment, BatchLoader, CamVid, median_frequency_weights  # noqa: E402
from minifcn.inference import evaluate  # noqa: E402
from minifcn.metrics import confusion_matrix, segmentation_scores  # noqa: E402
from minifcn.models import FCN8s  # noqa: E402
from minifcn.optim import Adam, learning_rate  # noqa: E402
from minifcn.preprocessing import TORCHVISION  # noqa: E402
from minifcn.surgery import randomise_scores  # noqa: E402

DEFAULT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "CamVid")


def schedule(args, t: int) -> float:
    """The presets' schedule (optim.learning_rate): 50 iterations of linear warm-up, then poly decay."""
    return learning_rate(args.lr, t, args.iters, "poly", warmup=50)


def train_minifcn(model, loader, weights, args) -> float:
    model.to(args.device).train()
    optimiser = Adam(model.parameters(), lr=args.lr)
    weight = to_device(weights.astype(np.float32), args.device)
    start = time.perf_counter()
    for t in range(args.iters):
        x, y = loader.batch(t)
        optimiser.lr = schedule(args, t)
        loss = F.softmax_cross_entropy(
            model(mf.Tensor(to_device(x, args.device))), to_device(y, args.device), weight=weight
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if t % 50 == 0 or t == args.iters - 1:
            print(f"  minifcn iteration {t + 1}: loss {float(loss.item()):.4f}", flush=True)
    return time.perf_counter() - start


def train_torch(torch, net, ours, loader, weights, args) -> float:
    device = "cuda" if args.device == "cuda" else "cpu"
    net.to(device).train()
    multipliers = {name: p.lr_mult for name, p in ours.named_parameters()}
    groups: dict[float, list] = {}
    for name, p in net.named_parameters():
        if p.requires_grad:
            groups.setdefault(multipliers[name.split(".", 1)[1]], []).append(p)
    optimiser = torch.optim.Adam([{"params": ps, "mult": m} for m, ps in groups.items()], lr=args.lr)
    weight = torch.from_numpy(weights.astype(np.float32)).to(device)
    start = time.perf_counter()
    for t in range(args.iters):
        x, y = loader.batch(t)
        for group in optimiser.param_groups:
            group["lr"] = schedule(args, t) * group["mult"]
        scores = net(torch.from_numpy(x).to(device))
        loss = torch.nn.functional.cross_entropy(
            scores, torch.from_numpy(y).to(device), weight=weight, ignore_index=255
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if t % 50 == 0 or t == args.iters - 1:
            print(f"  torch   iteration {t + 1}: loss {float(loss.item()):.4f}", flush=True)
    return time.perf_counter() - start


def score_torch(torch, net, dataset, limit, device) -> np.ndarray:
    net.eval()
    hist = np.zeros((dataset.n_class, dataset.n_class), np.int64)
    with torch.no_grad():
        for i in range(min(len(dataset), limit or len(dataset))):
            image, label = dataset[i]
            scores = net(torch.from_numpy(TORCHVISION(image)[None]).to(device))
            hist += confusion_matrix(label, scores.argmax(dim=1)[0].cpu().numpy(), dataset.n_class)
    return hist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=DEFAULT_ROOT)
    parser.add_argument("--backbone", default="tiny-bn")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--val-limit", type=int, help="score only the first N validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-torch", action="store_true", help="train minifcn alone")
    parser.add_argument(
        "--steps-only",
        action="store_true",
        help="only time the camvid-cpu preset's step (whole 480x360 images) against its PyTorch twin",
    )
    args = parser.parse_args()
    if args.steps_only:
        step_ratio(args)
        return

    train_set, val_set = CamVid(args.data_root, "train"), CamVid(args.data_root, "val")
    weights = median_frequency_weights(train_set)
    crop = (args.crop_size, args.crop_size) if args.crop_size else None

    def loader():  # the same batches, in the same order, for both
        return BatchLoader(train_set, args.batch_size, TORCHVISION, Augment(flip=True, crop_size=crop), seed=args.seed)

    mf.manual_seed(args.seed)
    ours = FCN8s(n_class=train_set.n_class, backbone=args.backbone)
    randomise_scores(ours, args.seed)
    torch = None
    if not args.skip_torch:
        try:
            import torch
        except ImportError:
            print("torch is not importable: minifcn alone")
    theirs = build_torch(torch, ours) if torch is not None else None  # copied before minifcn trains
    print(
        f"CamVid: {len(train_set)} training, {len(val_set)} validation images; FCN-8s {args.backbone}; "
        f"{args.iters} iterations of {args.batch_size} crops of {args.crop_size}; Adam lr {args.lr}; "
        f"median-frequency weights; device {args.device}",
        flush=True,
    )

    results = {}
    seconds = train_minifcn(ours, loader(), weights, args)
    hist = evaluate(ours, val_set, TORCHVISION, args.device, 4, args.val_limit)
    results["minifcn"] = (segmentation_scores(hist), seconds)
    if theirs is not None:
        torch.manual_seed(args.seed)
        seconds = train_torch(torch, theirs, ours, loader(), weights, args)
        hist = score_torch(torch, theirs, val_set, args.val_limit, "cuda" if args.device == "cuda" else "cpu")
        results["PyTorch"] = (segmentation_scores(hist), seconds)

    print("\n| | mean IU | class-avg acc | pixel acc | training (s) |\n|---|---|---|---|---|")
    for name, (s, sec) in results.items():
        print(f"| {name} | {s['mean_iu']:.4f} | {s['mean_acc']:.4f} | {s['pixel_acc']:.4f} | {sec:.0f} |")
    if "PyTorch" in results:
        ratio = results["minifcn"][0]["mean_iu"] / results["PyTorch"][0]["mean_iu"]
        print(f"\nminifcn / PyTorch mean IU: {ratio:.3f} (target at least 0.97)")
    print("\n| class | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for c, name in enumerate(train_set.classes):
        print(f"| {name} | " + " | ".join(f"{s['iu'][c]:.3f}" for s, _ in results.values()) + " |")
    if "PyTorch" in results:
        ratio = results["minifcn"][1] / results["PyTorch"][1]
        print(f"\nper iteration at {args.crop_size} crops: minifcn / PyTorch {ratio:.2f}x")
        if args.device == "cpu":
            step_ratio(args)


def step_ratio(args) -> None:
    """The camvid-cpu preset's own step (whole 480x360 images, batch 4) against its twin (bench_step.py)."""
    print("\nThe camvid-cpu preset's step, minifcn against its PyTorch twin (bench_step.py):")
    report(twin_steps("camvid-cpu", 15, args.data_root, blas_threads()))


if __name__ == "__main__":
    main()
