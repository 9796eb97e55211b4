"""A recipe search for the CamVid presets, chosen on a drive the net never saw, at a size a CPU can afford.

    python benchmarks/search_camvid.py [--data-root ../shared/data/CamVid] [--scale 0.25] [--every 1]
                                       [--iters 300] [--seeds 0] [--device cpu|cuda] [--score-full-size]
                                       [--held-out 0006R0] [--only NAME ...]

Each variant changes one thing of a base recipe (FCN-8s from scratch on the tiny-bn trunk, the paper's pad 100 and
the classifier's 7x7 fc6, fixed upsampling, Adam at 0.01 with 50 iterations of warm-up and poly decay, flips,
median-frequency class weights, batches of 4 whole images), or a few; the last ones change one thing of the
finalist, which the CamVid presets now use (a 4x4 fc6 at pad 21, ENet's weights): its data, its training
(progressive resizing: the first iterations on smaller images, which cost less), its net (a pool2 skip, global
context, a net that stays at 1/8, ResNet shortcuts, deep supervision: ``camvid_nets.py``), its loss
(``camvid_losses.py``) or its inputs (``camvid_inputs.py``). It trains for the same iterations (or a multiple of
them, where a variant says) from the same seed on ``train-without-0006R0`` (every ``--every``-th image, resized by
``--scale``; ``--held-out`` holds out another drive), so that its score on the held-out drive 0006R0 (all its
images, resized alike) is a score on streets it never saw: the question CamVid's test split asks. Val, whose drive
204 of the training images share, is printed beside it, not chosen on. Each trained net is scored four ways: as it
is; with batch norm's statistics recomputed over the training images (``recompute_batch_norm``, as SegNet does
before testing); with the scores of the image and of its mirror image averaged; and both.

The table gives, per variant and seed: the held-out drive's mean IU four ways, val's mean IU, the rare
classes' mean IU on the held-out drive (pole, sign, pedestrian, bicyclist), and the seconds of training.
With ``--score-full-size`` a net trained at a reduced scale is scored against the full 480x360 labels: its
inputs stay at the training scale and its class scores are upsampled (bilinearly) to the labels' size.
On a GPU, run it at ``--scale 1 --iters 2000`` for the presets' own size.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the nets and losses beside this script

from camvid_inputs import locally_normalised  # noqa: E402
from camvid_losses import hardest_only, smoothing_loss, soft_jaccard  # noqa: E402
from camvid_nets import (  # noqa: E402
    DeeplySupervised8s,
    Dilated8s,
    FCN4s,
    GlobalContext8s,
    features_with,
    keeping_dropout,
    reading_rows,
    with_instance_norm,
    with_mixstyle,
    with_row,
    with_shortcuts,
)

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn.backend import to_device  # noqa: E402
from minifcn.data import BALANCING, HELD_OUT_DRIVE, Augment, BatchLoader, CamVid, DataError  # noqa: E402
from minifcn.data.camvid import drive_of  # noqa: E402
from minifcn.data.transforms import rescale  # noqa: E402
from minifcn.metrics import confusion_matrix, segmentation_scores  # noqa: E402
from minifcn.models import FCN8s, backbones  # noqa: E402
from minifcn.models.fcn import FCN  # noqa: E402
from minifcn.nn import recompute_batch_norm  # noqa: E402
from minifcn.optim import SGD, Adam, learning_rate  # noqa: E402
from minifcn.preprocessing import TORCHVISION  # noqa: E402
from minifcn.surgery import randomise_scores  # noqa: E402

DEFAULT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "CamVid")
RARE = ("pole", "sign", "pedestrian", "bicyclist")

BASE = dict(
    pad=100,
    fc6=7,
    learn_up=False,
    lr=0.01,
    beta2=0.999,
    warmup=50,
    weights="median-freq",
    augment="flip",
    colour=0.0,
    weight_decay=0.0,
    scale=None,  # (low, high) of random rescaling; None: flip-scale's (0.5, 2) if augment says so, else none
    crop=None,  # square crops, in pixels of the full 480x360 images; None: whole images
    batch=4,
    widths=None,  # tiny-bn's five stage widths; None: its own (4, 8, 32, 64, 128)
    fc=None,  # the width of fc6 and fc7; None: tiny-bn's own (256)
    weight_power=1.0,  # the class weights raised to this power: 0.5 halves their spread on a log scale
    convs=None,  # the 3x3 convolutions in each of the five stages; None: VGG16's (2, 2, 3, 3, 3)
    pool2=False,  # a fourth skip, from pool2 (camvid_nets.FCN4s)
    cutmix=0.0,  # the share of images that get a box (and its labels) pasted from the next image of the batch
    smoothing=0.0,  # label smoothing: this share of each pixel's target spread evenly over the classes
    per_image=False,  # each image standardised by its own channel means and deviations (standardised below)
    context=False,  # ParseNet's global context (camvid_nets.GlobalContext8s)
    swa=0.0,  # stochastic weight averaging over this last share of the iterations, the lr held where it was
    with_val=False,  # val's 101 images (drive 0016E5) trained on too; val's score is then no longer a held-out one
    dilated=None,  # ((stage 4 and 5 widths), fc width, pool3 skip): Dilated8s, at 1/8; None: FCN-8s
    jaccard=0.0,  # this times the soft Jaccard loss (mean IU made differentiable), added to the cross-entropy
    hardest=1.0,  # bootstrapped cross-entropy: only this share of the labelled pixels, the hardest, count
    dropout=0.0,  # dropout after relu6 and relu7 at this rate (tiny-bn has none; VGG16 and the paper 0.5)
    ibn=0,  # IBN-Net: in this many first stages, half of each batch norm's channels instance normalised instead
    rows=False,  # each pixel's row (-1 at the top, 1 at the bottom) as a fourth input channel (CoordConv)
    sgd=False,  # SGD with momentum 0.9 (the paper's solver, at the recipe's lr and schedule) instead of Adam
    shortcuts=False,  # each convolution whose widths agree made a ResNet block: relu(bn(conv(x)) + x)
    coarse=None,  # (factor, multiple): first this multiple of --iters on the images resized by factor, then the rest
    deep=0.0,  # deep supervision: this times the loss of each of the 1/32 and 1/16 scores alone, added
    drives=None,  # the drives of the training split to train on (e.g. ("0016E5",)); None: all of them
    subset=None,  # train on this many of the training images, evenly spaced over them (every drive kept)
    blur=0.0,  # half the batches blurred (a Gaussian of a uniform deviation up to this, in full-size pixels)
    noise=0.0,  # Gaussian noise of a uniform deviation up to this (in the preprocessed inputs' units) on every batch
    mixstyle=0,  # MixStyle (camvid_nets.MixStyle) after the pooling of this many first stages
    lcn=0.0,  # local contrast normalisation of the inputs (camvid_inputs), its window's deviation in full-size pixels
)
FINALIST = dict(pad=21, fc6=4, weights="enet", iters=1.8)
QUICK = dict(learn_up=True, beta2=0.99, warmup=100)  # the quick preset's settings beside its geometry
VARIANTS = {
    "base recipe": {},
    "fc6 4x4, pad 21": dict(pad=21, fc6=4),
    "quick's optimiser and upsampling": QUICK,
    "both of those": dict(QUICK, pad=21, fc6=4),
    "enet weights": dict(weights="enet"),
    "no class weights": dict(weights="none"),
    "flip-scale": dict(augment="flip-scale"),
    "lr 0.003": dict(lr=0.003),
    # on the cheaper geometry: the class weights, and the iterations its step buys in the same time (1.8x at 480x360)
    "fc6 4x4, enet weights": dict(pad=21, fc6=4, weights="enet"),
    "fc6 4x4, no class weights": dict(pad=21, fc6=4, weights="none"),
    "fc6 4x4, 1.8x iterations": dict(pad=21, fc6=4, iters=1.8),
    "fc6 4x4, enet weights, 1.8x iterations": FINALIST,
    # on the finalist: what another drive's light, fewer large weights, or no weights do
    "finalist, colour jitter 0.3": dict(FINALIST, colour=0.3),
    "finalist, weight decay 5e-4": dict(FINALIST, weight_decay=5e-4),
    "finalist, no class weights": dict(FINALIST, weights="none"),
    "finalist, scale 0.75-1.25": dict(FINALIST, scale=(0.75, 1.25)),
    # at pad 21 a 256x256 crop puts 0.42 of a whole image's pixels through conv1 (298^2 against 402x522)
    "finalist, 256x256 crops, 4x iterations": dict(FINALIST, crop=256, iters=4.0),
    "finalist, lr 0.02": dict(FINALIST, lr=0.02),
    "finalist, batches of 8, half the iterations": dict(FINALIST, batch=8, iters=0.9),
    "finalist, batches of 2, twice the iterations": dict(FINALIST, batch=2, iters=3.6),
    "finalist, first two stages twice as wide": dict(FINALIST, widths=(8, 16, 32, 64, 128)),
    "finalist, square root of ENet's weights": dict(FINALIST, weight_power=0.5),
    "finalist, cutmix on half the images": dict(FINALIST, cutmix=0.5),
    "finalist, cutmix on every image": dict(FINALIST, cutmix=1.0),
    "finalist, label smoothing 0.1": dict(FINALIST, smoothing=0.1),
    "finalist, a skip from pool2 too, pad 22": dict(FINALIST, pool2=True, pad=22),
    # other trunks of about the finalist's cost: fewer thin convolutions at full and half size, wider stages after
    "finalist, convolutions 1-1-3-3-3, widths 8-16-32-64-128": dict(
        FINALIST, widths=(8, 16, 32, 64, 128), convs=(1, 1, 3, 3, 3)
    ),
    "finalist, convolutions 1-1-2-2-2, widths 8-16-48-96-128": dict(
        FINALIST, widths=(8, 16, 48, 96, 128), convs=(1, 1, 2, 2, 2)
    ),
    "finalist, each image standardised": dict(FINALIST, per_image=True),
    "finalist, colour jitter 0.5": dict(FINALIST, colour=0.5),
    "finalist, weights averaged over the last quarter (SWA)": dict(FINALIST, swa=0.25),
    # the changes that scored at or above the finalist, together
    "finalist, square root of ENet's weights, cutmix on half, SWA": dict(
        FINALIST, weight_power=0.5, cutmix=0.5, swa=0.25
    ),
    "finalist, val's images trained on too": dict(FINALIST, with_val=True),
    "finalist, global context (ParseNet)": dict(FINALIST, context=True),
    # a trunk that stays at 1/8 with dilated stages 4 and 5, as ENet: no pad, no crops to derive
    "finalist, dilated at 1/8, stages 4-5 64 wide, fc 128": dict(FINALIST, dilated=((64, 64), 128, False)),
    "finalist, dilated at 1/8, stages 4-5 64 wide, fc 128, pool3 skip": dict(FINALIST, dilated=((64, 64), 128, True)),
    # losses nearer the score: IU itself, whose false alarms count as misses do; or the hard pixels only
    "finalist, + soft Jaccard loss": dict(FINALIST, jaccard=1.0),
    "finalist, soft Jaccard loss, no class weights": dict(FINALIST, jaccard=1.0, weights="none"),
    "finalist, the hardest quarter of the pixels": dict(FINALIST, hardest=0.25),
    # regularised as the paper's FCNs are: dropout after fc6 and fc7
    "finalist, dropout 0.5 after fc6 and fc7": dict(FINALIST, dropout=0.5),
    "finalist, dropout 0.2 after fc6 and fc7": dict(FINALIST, dropout=0.2),
    # a change of drive as a change of domain: IBN-Net's instance normalisation in the first stages
    "finalist, half instance norm in stages 1-2 (IBN-Net)": dict(FINALIST, ibn=2),
    "finalist, half instance norm in stages 1-3 (IBN-Net)": dict(FINALIST, ibn=3),
    # what every drive shares: the camera's view, sky above and road below
    "finalist, each pixel's row as an input channel": dict(FINALIST, rows=True),
    # adaptive steps can generalise worse than SGD's (Wilson et al. 2017)
    "finalist, SGD with momentum at lr 0.1": dict(FINALIST, sgd=True, lr=0.1),
    "finalist, SGD with momentum at lr 0.03": dict(FINALIST, sgd=True, lr=0.03),
    "finalist, SGD with momentum at lr 0.01": dict(FINALIST, sgd=True, lr=0.01),
    # more capacity, at 2.6x, 3.4x and 8x the step (240x180): what a GPU could afford
    "finalist, widths 8-16-64-128-256, fc 512": dict(FINALIST, widths=(8, 16, 64, 128, 256), fc=512),
    "finalist, widths 16-32-64-128-256, fc 512": dict(FINALIST, widths=(16, 32, 64, 128, 256), fc=512),
    "finalist, widths 32-64-128-256-256, fc 1024": dict(FINALIST, widths=(32, 64, 128, 256, 256), fc=1024),
    # the trunk made residual; progressive resizing (more iterations for the time, at half size first); deep supervision
    "finalist, ResNet shortcuts": dict(FINALIST, shortcuts=True),
    "finalist, 3.1x iterations at half size, then 0.6x": dict(FINALIST, iters=0.6, coarse=(0.5, 3.1)),
    "finalist, 2.3x iterations at half size, then 0.9x": dict(FINALIST, iters=0.9, coarse=(0.5, 2.3)),
    "finalist, deep supervision 0.4": dict(FINALIST, deep=0.4),
    # does the wider trunk keep gaining with iterations, where tiny-bn stops?
    "finalist, widths 16-32-64-128-256, fc 512, 3x iterations": dict(
        FINALIST, widths=(16, 32, 64, 128, 256), fc=512, iters=5.4
    ),
    # how much a second drive is worth to the held-out one: 0016E5's 204 alone, against 204 from both drives
    "finalist, drive 0016E5 alone (204 images)": dict(FINALIST, drives=("0016E5",)),
    "finalist, 204 images of both drives": dict(FINALIST, subset=204),
    "finalist, drive 0006R0 alone (101 images; hold out 0001TP)": dict(FINALIST, drives=("0006R0",)),
    # another camera's sharpness and grain: blur and noise
    "finalist, blur up to 2 px on half the batches": dict(FINALIST, blur=2.0),
    "finalist, noise up to 0.1": dict(FINALIST, noise=0.1),
    # styles mixed between the training images, where IBN-Net took them out: MixStyle after pool1-pool3
    "finalist, MixStyle after stages 1-3": dict(FINALIST, mixstyle=3),
    # SegNet-Basic's input: each neighbourhood's light and contrast taken out (camvid_inputs)
    "finalist, local contrast normalised, 4 px": dict(FINALIST, lcn=4.0),
    "finalist, local contrast normalised, 16 px": dict(FINALIST, lcn=16.0),
}


class Resized:
    """Every ``every``-th item of a CamVid split, resized by ``scale`` once (labels by nearest neighbour)."""

    def __init__(self, root: str, split: str, scale: float, every: int):
        full = CamVid(root, split)
        self.items = [rescale(*full[i], scale) for i in range(0, len(full), every)]
        self.drives = [drive_of(image) for image, _ in full.pairs[::every]]
        self.classes, self.n_class, self.split = full.classes, full.n_class, split

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def joined(a: Resized, b: Resized) -> Resized:
    """The items of ``a`` then those of ``b``, as one split."""
    both = copy.copy(a)
    both.items, both.drives, both.split = a.items + b.items, a.drives + b.drives, f"{a.split}+{b.split}"
    return both


def kept(dataset: Resized, drives: tuple | None, subset: int | None) -> Resized:
    """The items of ``dataset`` from ``drives`` only (None: every drive), then ``subset`` of those evenly spaced over
    them (None: all of them). Refuses a choice that keeps no image."""
    indices = [i for i in range(len(dataset)) if drives is None or dataset.drives[i] in drives]
    if not indices or subset is not None and not 0 < subset <= len(indices):
        raise ValueError(
            f"{dataset.split} holds {len(indices)} images of drives {drives or 'any'} (its drives: "
            f"{sorted(set(dataset.drives))}); cannot train on {subset or 'them'}"
        )
    if subset is not None:
        indices = [indices[k] for k in np.round(np.linspace(0, len(indices) - 1, subset)).astype(int)]
    part = copy.copy(dataset)
    part.items, part.drives = [dataset.items[i] for i in indices], [dataset.drives[i] for i in indices]
    return part


class FullSizeLabels:
    """The items of ``resized`` with their labels at full size: the scores are then upsampled to those labels."""

    def __init__(self, root: str, split: str, resized: Resized):
        full = CamVid(root, split)
        self.resized, self.labels = resized, [full[i][1] for i in range(len(full))]
        self.classes, self.n_class, self.split = resized.classes, resized.n_class, split

    def __len__(self) -> int:
        return len(self.resized)

    def __getitem__(self, i: int):
        return self.resized[i][0], self.labels[i]


def standardised(image: np.ndarray) -> np.ndarray:
    """TORCHVISION's (3, H, W), then each channel less its own mean over the image, over its own deviation: a
    drive's brighter or duller light no longer moves the net's inputs. A float64 sum over the pixels."""
    x = TORCHVISION(image)
    mean = x.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    std = x.std(axis=(1, 2), keepdims=True, dtype=np.float64)
    return ((x - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def inputs_of(dataset: Resized, indices: range, preprocess=TORCHVISION) -> np.ndarray:
    """The preprocessed images (N, 3, H, W) of ``indices`` (all of one size here)."""
    return np.stack([preprocess(dataset[i][0]) for i in indices])


def score(model, dataset: Resized, device: str, flip: bool, batch: int = 8) -> dict:
    """Scores over ``dataset``; with ``flip``, the class scores of each image and its mirror image averaged."""
    hist = np.zeros((dataset.n_class, dataset.n_class), np.int64)
    model.eval()
    with mf.no_grad():
        for start in range(0, len(dataset), batch):
            chunk = range(start, min(start + batch, len(dataset)))
            x = to_device(inputs_of(dataset, chunk, model.preprocess), device)
            scores = model(mf.Tensor(x)).data
            if flip:
                scores = (scores + model(mf.Tensor(x[..., ::-1].copy())).data[..., ::-1]) / 2
            scores = to_device(scores, "cpu")
            for i, image_scores in zip(chunk, scores):
                label = dataset[i][1]
                if label.shape != image_scores.shape[1:]:  # scored at full size: upsample the scores bilinearly
                    zoom = [1] + [a / b for a, b in zip(label.shape, image_scores.shape[1:])]
                    image_scores = ndimage.zoom(image_scores, zoom, order=1, grid_mode=True, mode="nearest")
                hist += confusion_matrix(label, image_scores.argmax(axis=0), dataset.n_class)
    model.train()
    return segmentation_scores(hist)


def cutmix(x: np.ndarray, y: np.ndarray, share: float, rng: np.random.Generator) -> tuple:
    """CutMix (Yun et al. 2019) for segmentation: into each image chosen (with probability ``share``), a box of a
    uniform share of the area pasted, with its labels, from the next image of the batch (the last from the first).
    ``x`` (N, 3, H, W) images, ``y`` (N, H, W) labels; returns new arrays of the same shapes."""
    N, H, W = y.shape
    side = np.sqrt(rng.random(N))
    h, w = np.round(H * side).astype(int), np.round(W * side).astype(int)
    top, left = (rng.random(N) * (H - h + 1)).astype(int), (rng.random(N) * (W - w + 1)).astype(int)
    rows, cols = np.arange(H)[None, :, None], np.arange(W)[None, None, :]
    box = (rows >= top[:, None, None]) & (rows < (top + h)[:, None, None])
    box = box & (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None])  # (N, H, W)
    box &= (rng.random(N) < share)[:, None, None]
    return np.where(box[:, None], np.roll(x, -1, axis=0), x), np.where(box, np.roll(y, -1, axis=0), y)


def blurred_and_noisy(x: np.ndarray, blur: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """The batch ``x`` (N, 3, H, W), with probability 1/2 blurred by a Gaussian of a deviation uniform in (0,
    ``blur``) pixels, then Gaussian noise of a deviation uniform in (0, ``noise``) added to every pixel."""
    if blur and rng.random() < 0.5:
        x = ndimage.gaussian_filter(x, (0, 0, *(2 * [rng.uniform(0, blur)])), mode="nearest")
    if noise:
        x = x + rng.normal(0, rng.uniform(0, noise), x.shape).astype(x.dtype)
    return x


def build(recipe: dict, n_class: int) -> FCN:
    """FCN-8s on tiny-bn, at the recipe's stage and fc widths, convolutions, dropout and normalisation (the trunk
    reads ``TINY_WIDTHS``, ``TINY_FC``, ``vgg16_features`` and ``with_batch_norm`` as it is built; instance norm goes
    in after)."""
    if recipe["dilated"]:
        (c4, c5), fc, skip = recipe["dilated"]
        return Dilated8s(n_class, (4, 8, 32, c4, c5), fc, skip)
    own, own_features, own_bn = backbones.TINY_WIDTHS, backbones.vgg16_features, backbones.with_batch_norm
    own_fc = backbones.TINY_FC
    backbones.TINY_WIDTHS, backbones.TINY_FC = recipe["widths"] or own, recipe["fc"] or own_fc
    if recipe["convs"]:
        backbones.vgg16_features = features_with(recipe["convs"])
    if recipe["dropout"]:
        backbones.with_batch_norm = keeping_dropout(backbones.with_batch_norm, recipe["dropout"])
    try:
        net = FCN4s if recipe["pool2"] else GlobalContext8s if recipe["context"] else FCN8s
        net = DeeplySupervised8s if recipe["deep"] else net
        model = net(n_class, "tiny-bn", recipe["learn_up"], pad=recipe["pad"], fc6_kernel=recipe["fc6"])
        model = with_instance_norm(model, recipe["ibn"])
        model = with_shortcuts(model) if recipe["shortcuts"] else model
        return reading_rows(model) if recipe["rows"] else model
    finally:
        backbones.TINY_WIDTHS, backbones.vgg16_features, backbones.with_batch_norm = own, own_features, own_bn
        backbones.TINY_FC = own_fc


def train(recipe: dict, train_set: Resized, seed: int, args) -> tuple:
    mf.manual_seed(seed)
    model = build(recipe, train_set.n_class)
    randomise_scores(model, seed)
    model = with_mixstyle(model, recipe["mixstyle"], seed) if recipe["mixstyle"] else model
    model.preprocess = standardised if recipe["per_image"] else TORCHVISION  # for training and for scoring
    if recipe["lcn"]:
        model.preprocess = locally_normalised(recipe["lcn"] * args.scale)
    if recipe["rows"]:
        model.preprocess = with_row(model.preprocess)
    model.to(args.device).train()
    optimiser, loader = optimiser_for(recipe, model), loader_for(recipe, train_set, model.preprocess, seed, args.scale)
    weights = None if recipe["weights"] == "none" else BALANCING[recipe["weights"]](train_set) ** recipe["weight_power"]
    weight = None if weights is None else to_device(weights.astype(np.float32), args.device)
    start, iters = time.perf_counter(), round(args.iters * recipe.get("iters", 1))
    rng = np.random.default_rng(seed + 1000)
    coarse, first = None, 0
    if recipe["coarse"]:  # progressive resizing: the first iterations on smaller images, which cost less
        factor, first = recipe["coarse"][0], round(args.iters * recipe["coarse"][1])
        small = copy.copy(train_set)
        small.items = [rescale(image, label, factor) for image, label in train_set.items]
        coarse, iters = loader_for(recipe, small, model.preprocess, seed, args.scale * factor), iters + first
    swa_start, averaged = iters - round(iters * recipe["swa"]), None
    for t in range(iters):
        x, y = coarse.batch(t) if t < first else loader.batch(t - first)
        if recipe["cutmix"]:
            x, y = cutmix(x, y, recipe["cutmix"], rng)
        if recipe["blur"] or recipe["noise"]:
            x = blurred_and_noisy(x, recipe["blur"] * args.scale, recipe["noise"], rng)
        optimiser.lr = learning_rate(recipe["lr"], min(t, swa_start), iters, "poly", warmup=recipe["warmup"])
        scores = model(mf.Tensor(to_device(x, args.device)))
        if recipe["hardest"] < 1:
            y = hardest_only(scores.data, y, recipe["hardest"])
        loss = F.softmax_cross_entropy(scores, to_device(y, args.device), weight=weight)
        for aux in getattr(model, "aux", []) if recipe["deep"] else []:
            loss = loss + F.softmax_cross_entropy(aux, to_device(y, args.device), weight=weight) * recipe["deep"]
        if recipe["jaccard"]:
            loss = loss + soft_jaccard(scores, to_device(y, args.device)) * recipe["jaccard"]
        if recipe["smoothing"]:
            loss = loss * (1 - recipe["smoothing"]) + smoothing_loss(scores, y, recipe["smoothing"], args.device)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if t >= swa_start:
            averaged = swa_update(averaged, model, t - swa_start)
    if averaged is not None:  # the running statistics belong to the last weights: recompute them (the row does)
        for p, mean in zip(model.parameters(), averaged):
            p.data = to_device(mean.astype(p.data.dtype), args.device)
    return model, time.perf_counter() - start


def optimiser_for(recipe: dict, model):
    """Adam at the recipe's lr and beta2, or SGD with momentum 0.9 (the recipe's ``sgd``)."""
    if recipe["sgd"]:
        return SGD(model.parameters(), lr=recipe["lr"], momentum=0.9, weight_decay=recipe["weight_decay"])
    return Adam(model.parameters(), lr=recipe["lr"], betas=(0.9, recipe["beta2"]), weight_decay=recipe["weight_decay"])


def loader_for(recipe: dict, train_set: Resized, preprocess, seed: int, data_scale: float) -> BatchLoader:
    """Batches of the recipe's size, flipped, and rescaled, cropped or coloured where the recipe says."""
    H, W = train_set[0][1].shape
    scale = recipe["scale"] or ((0.5, 2.0) if recipe["augment"] == "flip-scale" else (1.0, 1.0))
    crop = (H, W) if scale != (1.0, 1.0) else None  # the batch keeps one size
    if recipe["crop"]:  # in pixels of the full-size images
        side = round(recipe["crop"] * data_scale)
        crop = (side, side)
    augment = Augment(True, scale, crop, colour=recipe["colour"])
    return BatchLoader(train_set, recipe["batch"], preprocess, augment, seed=seed)


def swa_update(averaged: list | None, model, k: int) -> list:
    """SWA (Izmailov et al. 2018): the running mean, in float64, of the parameters after each of the last steps;
    ``k`` steps were averaged before this one."""
    now = [to_device(p.data, "cpu").astype(np.float64) for p in model.parameters()]
    if averaged is None:
        return now
    return [mean + (p - mean) / (k + 1) for mean, p in zip(averaged, now)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--held-out", default=HELD_OUT_DRIVE, help="the drive held out of train and scored on")
    p.add_argument("--every", type=int, default=1, help="train on every N-th image of train without that drive")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--score-full-size", action="store_true", help="score against the 480x360 labels")
    p.add_argument("--only", nargs="+", metavar="NAME", help="the variants to run, by name (quoted)")
    args = p.parse_args()
    try:  # a root or drive that is not there: one line, naming what is
        train_set = Resized(args.data_root, f"train-without-{args.held_out}", args.scale, args.every)
        held_out, val = (
            Resized(args.data_root, args.held_out, args.scale, 1),
            Resized(args.data_root, "val", args.scale, 1),
        )
    except DataError as e:
        p.error(str(e).splitlines()[0].removesuffix("; expected the layout"))
    if args.score_full_size:
        held_out, val = (FullSizeLabels(args.data_root, s.split, s) for s in (held_out, val))
    names = args.only or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    H, W = train_set[0][1].shape
    print(
        f"CamVid at {W}x{H}: {len(train_set)} training images (train without {args.held_out}), scored on the "
        f"{len(held_out)} of drive {args.held_out} and the {len(val)} of val"
        f"{' against their 480x360 labels' if args.score_full_size else ''}; {args.iters} iterations each (times "
        f"a variant's own multiple), device {args.device}\n"
    )
    print("| variant | seed | held out | + BN recomputed | + flip | + both | val | rare (held out) | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    recipes, data = {n: dict(BASE, **VARIANTS[n]) for n in names}, {}
    for name, recipe in recipes.items():  # each variant's training images, all checked before any trains
        both = joined(train_set, val.resized if args.score_full_size else val) if recipe["with_val"] else train_set
        try:
            data[name] = kept(both, recipe["drives"], recipe["subset"])
        except ValueError as e:
            p.error(f"variant {name!r}: {e}")
    for name in names:
        for seed in args.seeds:
            model, seconds = train(recipes[name], data[name], seed, args)
            print(row(name, seed, model, seconds, data[name], held_out, val, args.device), flush=True)


def row(name: str, seed: int, model, seconds: float, train_set: Resized, held_out: Resized, val: Resized, device: str):
    """The table's row: the held-out drive scored four ways (the last two after batch norm is recomputed), val."""
    rare = [held_out.classes.index(c) for c in RARE]
    plain, flipped, on_val = (score(model, held_out, device, False), score(model, held_out, device, True),
                              score(model, val, device, False))  # fmt: skip
    batches = [
        inputs_of(train_set, range(i, min(i + 4, len(train_set))), model.preprocess)
        for i in range(0, len(train_set), 4)
    ]
    recompute_batch_norm(model, (mf.Tensor(to_device(x, device)) for x in batches))
    recomputed, both = score(model, held_out, device, False), score(model, held_out, device, True)
    cells = [plain, recomputed, flipped, both, on_val]
    return (
        f"| {name} | {seed} | "
        + " | ".join(f"{c['mean_iu']:.3f}" for c in cells)
        + f" | {np.nanmean(plain['iu'][rare]):.3f} | {seconds:.0f} |"
    )


if __name__ == "__main__":
    main()
