"""A recipe search for the camvid preset, at a size a CPU can afford.

    python benchmarks/search_camvid.py [--data-root ../shared/data/CamVid] [--scale 0.25] [--every 2]
                                       [--iters 300] [--device cpu|cuda] [--only NAME,NAME]

Each variant changes one thing of the preset's recipe (FCN-8s from scratch on
the tiny-bn trunk, Adam at 0.01 with warm-up and poly decay, flips,
median-frequency class weights, batches of 4 whole images) and is trained
for the same iterations from the same seed, on every ``--every``-th training
image resized by ``--scale``, then scored on the validation split resized
alike. The table gives mean IU, pixel accuracy, the rare classes' mean IU
(pole, sign, pedestrian, bicyclist) and the seconds each took. On a GPU, run
it at ``--scale 1 --every 1 --iters 2000`` for the preset's own size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn.backend import to_device  # noqa: E402
from minifcn.data import Augment, BatchLoader, CamVid, median_frequency_weights  # noqa: E402
from minifcn.data.transforms import rescale  # noqa: E402
from minifcn.inference import evaluate  # noqa: E402
from minifcn.metrics import segmentation_scores  # noqa: E402
from minifcn.models import FCN8s  # noqa: E402
from minifcn.optim import SGD, Adam, learning_rate  # noqa: E402
from minifcn.preprocessing import TORCHVISION  # noqa: E402
from minifcn.surgery import randomise_scores  # noqa: E402

DEFAULT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "CamVid")
RARE = ("pole", "sign", "pedestrian", "bicyclist")

BASE = dict(backbone="tiny-bn", optimizer="adam", lr=0.01, weights="median-freq", augment="flip", batch=4)
VARIANTS = {
    "preset": {},
    "no class weights": dict(weights="none"),
    "lr 0.003": dict(lr=0.003),
    "lr 0.03": dict(lr=0.03),
    "flip-scale": dict(augment="flip-scale"),
    "sgd (momentum 0.9)": dict(optimizer="sgd"),
    "tiny (no batch norm)": dict(backbone="tiny"),
}


class Resized:
    """Every ``every``-th item of a CamVid split, resized by ``scale`` once (labels by nearest neighbour)."""

    def __init__(self, root: str, split: str, scale: float, every: int):
        full = CamVid(root, split)
        self.items = [rescale(*full[i], scale) for i in range(0, len(full), every)]
        self.classes, self.n_class = full.classes, full.n_class

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def run(recipe: dict, train_set: Resized, val_set: Resized, weights: np.ndarray, args) -> dict:
    mf.manual_seed(0)
    model = FCN8s(n_class=train_set.n_class, backbone=recipe["backbone"])
    randomise_scores(model, 0)
    model.to(args.device).train()
    if recipe["optimizer"] == "adam":
        optimiser = Adam(model.parameters(), lr=recipe["lr"])
    else:
        optimiser = SGD(model.parameters(), lr=recipe["lr"], momentum=0.9)
    H, W = train_set[0][1].shape
    scale = (0.5, 2.0) if recipe["augment"] == "flip-scale" else (1.0, 1.0)
    crop = (H, W) if recipe["augment"] == "flip-scale" else None  # the batch keeps one size
    loader = BatchLoader(train_set, recipe["batch"], TORCHVISION, Augment(flip=True, scale=scale, crop_size=crop))
    weight = None if recipe["weights"] == "none" else to_device(weights.astype(np.float32), args.device)
    start = time.perf_counter()
    for t in range(args.iters):
        x, y = loader.batch(t)
        optimiser.lr = learning_rate(recipe["lr"], t, args.iters, "poly", warmup=50)
        scores = model(mf.Tensor(to_device(x, args.device)))
        loss = F.softmax_cross_entropy(scores, to_device(y, args.device), weight=weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    value = float(loss.item())
    seconds = time.perf_counter() - start
    result = segmentation_scores(evaluate(model, val_set, TORCHVISION, args.device))
    rare = [train_set.classes.index(c) for c in RARE]
    return dict(result, seconds=seconds, loss=value, rare_iu=float(np.nanmean(result["iu"][rare])))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--only", help="comma-separated variant names")
    args = p.parse_args()
    train_set = Resized(args.data_root, "train", args.scale, args.every)
    val_set = Resized(args.data_root, "val", args.scale, args.every)
    weights = median_frequency_weights(train_set)
    names = list(VARIANTS) if not args.only else [n.strip() for n in args.only.split(",")]
    H, W = train_set[0][1].shape
    print(
        f"CamVid at {W}x{H}: {len(train_set)} training, {len(val_set)} val images; {args.iters} iterations each, "
        f"device {args.device}"
    )
    print(f"{'variant':<22}{'mean IU':>8}{'pixel acc':>10}{'rare IU':>8}{'loss':>7}{'seconds':>8}")
    for name in names:
        r = run(dict(BASE, **VARIANTS[name]), train_set, val_set, weights, args)
        print(
            f"{name:<22}{r['mean_iu']:>8.3f}{r['pixel_acc']:>10.3f}{r['rare_iu']:>8.3f}{r['loss']:>7.3f}"
            f"{r['seconds']:>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
