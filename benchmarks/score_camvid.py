"""What test-time choices do to a trained CamVid net's score: its checkpoints scored several ways on one split.

    python benchmarks/score_camvid.py CHECKPOINT [CHECKPOINT ...] [--data-root ../shared/data/CamVid]
                                     [--split 0006R0] [--ways NAME ...] [--ensemble]

Each checkpoint (``best.npz`` or ``last.npz`` of a ``python -m minifcn.train`` run, trained on
``train-without-0006R0`` to ask the held-out drive's question, or without another drive) is scored on every image
of ``--split``, at 480x360, these ways:

- as trained: batch norm with its running statistics, one pass;
- batch norm from each image's own statistics (a single image per pass, so no image sees another): how much a
  drive's own light and colours, normalised away, are worth;
- the class scores of the image and of its mirror image averaged;
- the class scores at 0.75, 1 and 1.25 times the size averaged (each resized bilinearly to 480x360);
- both of the last two: six passes;
- each image's light matched to the training images': its channels' means and deviations moved to the average
  ones of ``train-without-<drive>`` where ``--split`` is a drive (0006R0 is brighter than the others: its pixels
  average about 138 against 97; 0001TP, filmed at dusk, darker), else of train;
- half of the class weighting taken back: a loss that weighs class c by w_c learns scores whose softmax is
  proportional to w_c p(c | image), so the rare classes are called more often than they occur and lose IU to
  false alarms; subtracting 0.5 ln w_c from the log-softmax scores (the weights from the checkpoint) takes
  back half of that.

The table gives mean IU and pixel accuracy per checkpoint and way, and the seconds each way took; then, for
each checkpoint as trained, the share of the pixels it gives each class beside the share that class truly has.
``--ways`` picks some of the ways, by name. With ``--ensemble`` a last row scores all the checkpoints together:
each image's class log-probabilities from every net averaged (nets of two seeds show how much of a net's score
is the luck of its seed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn.checkpoint import load_checkpoint, model_from_checkpoint, preprocessing_of  # noqa: E402
from minifcn.data import HELD_OUT_DRIVE, CamVid  # noqa: E402
from minifcn.data.transforms import rescale  # noqa: E402
from minifcn.metrics import confusion_matrix, segmentation_scores  # noqa: E402
from minifcn.nn import BatchNorm2d  # noqa: E402

DEFAULT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "CamVid")
WAYS = {  # name -> (batch norm from each image's statistics, scales, mirror too, share of weighting taken back,
    #                 light matched to the training images')
    "as trained": (False, (1.0,), False, 0.0, False),
    "batch norm per image": (True, (1.0,), False, 0.0, False),
    "+ mirror image": (False, (1.0,), True, 0.0, False),
    "scales 0.75, 1, 1.25": (False, (0.75, 1.0, 1.25), False, 0.0, False),
    "scales and mirror": (False, (0.75, 1.0, 1.25), True, 0.0, False),
    "light matched to training": (False, (1.0,), False, 0.0, True),
    "half the class weighting taken back": (False, (1.0,), False, 0.5, False),
}


class LightMatched:
    """The images of ``dataset`` with each channel's mean and deviation over the image moved to ``light`` (2, 3):
    the average per-image means and deviations of another split. Rounded and clipped to 0..255."""

    def __init__(self, dataset: CamVid, light: np.ndarray):
        self.dataset, self.light, self.n_class = dataset, light, dataset.n_class

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, label = self.dataset[i]
        pixels = image.reshape(-1, 3).astype(np.float64)
        standard = (pixels - pixels.mean(axis=0)) / np.maximum(pixels.std(axis=0), 1e-6)
        matched = standard * self.light[1] + self.light[0]
        return np.clip(np.rint(matched), 0, 255).astype(np.uint8).reshape(image.shape), label


def light_of(dataset: CamVid) -> np.ndarray:
    """(2, 3): the per-channel mean and deviation of each image of ``dataset``, averaged over its images."""
    pixels = (dataset[i][0].reshape(-1, 3).astype(np.float64) for i in range(len(dataset)))
    return np.mean([(p.mean(axis=0), p.std(axis=0)) for p in pixels], axis=0)


def class_scores(model, preprocess, image: np.ndarray, scale: float, mirror: bool) -> np.ndarray:
    """The (K, H, W) class scores of ``image`` (H, W, 3) seen at ``scale``, brought back to H x W bilinearly."""
    if mirror:
        image = image[:, ::-1]
    seen, _ = rescale(image, image[:, :, 0], scale)
    with mf.no_grad():
        scores = model(mf.Tensor(preprocess(seen)[None])).data[0]
    H, W = image.shape[:2]
    if scores.shape[1:] != (H, W):
        zoom = (1, H / scores.shape[1], W / scores.shape[2])
        scores = ndimage.zoom(scores, zoom, order=1, grid_mode=True, mode="nearest")
    return scores[:, :, ::-1] if mirror else scores


def confusion(path: str, dataset, per_image_bn: bool, scales: tuple, mirror: bool, taken_back: float):
    """The (K, K) confusion matrix (true class by row) of the checkpoint at ``path`` scored that way."""
    checkpoint = load_checkpoint(path)
    model, preprocess = model_from_checkpoint(checkpoint), preprocessing_of(checkpoint)
    weights = checkpoint.meta.get("class_weights")
    if taken_back and weights is None:
        raise SystemExit(f"{path}: trained without class weights, so there is no weighting to take back")
    shift = taken_back * np.log(np.asarray(weights))[:, None, None] if taken_back else 0.0
    model.eval()
    if per_image_bn:  # batch statistics of the one image in the pass; momentum 0 leaves the running ones as they are
        for _, layer in model.named_modules():
            if isinstance(layer, BatchNorm2d):
                layer.training, layer.momentum = True, 0.0
    hist = np.zeros((dataset.n_class, dataset.n_class), np.int64)
    for i in range(len(dataset)):
        image, label = dataset[i]
        passes = [class_scores(model, preprocess, image, s, m) for s in scales for m in (False, True)[: 1 + mirror]]
        mean = sum(passes) / len(passes)
        log_p = F.log_softmax(mf.Tensor(mean[None]), axis=1).data[0]
        hist += confusion_matrix(label, (log_p - shift).argmax(axis=0), dataset.n_class)
    return hist


def training_split(split: str, drives) -> str:
    """The split a net scored on ``split`` was trained on: train without that drive where ``split`` is one of
    ``drives`` (train's), else all of train. Light matching takes its target from it."""
    return f"train-without-{split}" if split in drives else "train"


def ensemble_confusion(paths: list[str], dataset) -> np.ndarray:
    """The (K, K) confusion matrix of the checkpoints at ``paths`` together: each image's class log-probabilities
    from every net (as trained, one pass) averaged, then the largest taken (the nets' probabilities multiplied)."""
    nets = []
    for path in paths:
        checkpoint = load_checkpoint(path)
        model = model_from_checkpoint(checkpoint)
        model.eval()
        nets.append((model, preprocessing_of(checkpoint)))
    hist = np.zeros((dataset.n_class, dataset.n_class), np.int64)
    for i in range(len(dataset)):
        image, label = dataset[i]
        log_p = [F.log_softmax(mf.Tensor(class_scores(m, pre, image, 1.0, False)[None]), axis=1).data[0]
                 for m, pre in nets]  # fmt: skip
        hist += confusion_matrix(label, (sum(log_p) / len(nets)).argmax(axis=0), dataset.n_class)
    return hist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    p.add_argument("--split", default=HELD_OUT_DRIVE)
    p.add_argument("--ways", nargs="+", metavar="NAME", choices=list(WAYS), default=list(WAYS))
    p.add_argument("--ensemble", action="store_true", help="also score all the checkpoints together, as one net")
    args = p.parse_args()
    dataset = CamVid(args.data_root, args.split)
    light = None
    if "light matched to training" in args.ways:
        light = light_of(CamVid(args.data_root, training_split(args.split, CamVid(args.data_root, "train").drives())))
    print(f"CamVid {args.split}: {len(dataset)} images at 480x360\n")
    print("| checkpoint | way | mean IU | pixel acc | seconds |")
    print("|---|---|---|---|---|")
    shares = {}
    for path in args.checkpoints:
        for way in args.ways:
            start = time.perf_counter()
            *how, matched = WAYS[way]
            hist = confusion(path, LightMatched(dataset, light) if matched else dataset, *how)
            s, seconds = segmentation_scores(hist), time.perf_counter() - start
            print(f"| {path} | {way} | {s['mean_iu']:.3f} | {s['pixel_acc']:.3f} | {seconds:.0f} |", flush=True)
            if way == "as trained":
                shares[path] = hist.sum(axis=0) / hist.sum(), hist.sum(axis=1) / hist.sum()
    if args.ensemble:
        start = time.perf_counter()
        s, n = segmentation_scores(ensemble_confusion(args.checkpoints, dataset)), len(args.checkpoints)
        seconds = time.perf_counter() - start
        print(f"| all {n} | log-probabilities averaged | {s['mean_iu']:.3f} | {s['pixel_acc']:.3f} | {seconds:.0f} |")
    for path, (called, true) in shares.items():
        print(f"\n{path}, as trained: the share of the pixels called each class (its true share)")
        print(", ".join(f"{c} {a:.3f} ({b:.3f})" for c, a, b in zip(dataset.classes, called, true)))


if __name__ == "__main__":
    main()
