"""python -m minifcn.train: train an FCN (Sec. 4), on the built-in Shapes by default.

    python -m minifcn.train                         # --preset quick: FCN-8s, tiny-bn backbone, Shapes, from scratch
    python -m minifcn.train --preset paper --model fcn32s --dataset sbd --data-root SBD \\
        --init vgg16.caffemodel --out runs/fcn32s   # the reference's settings

Every flag left out takes the preset's value (``--help`` lists them). A run
writes into ``--out``:

    config.json        every setting of the run
    log.csv            iteration, loss, lr, seconds; and the eval metrics when computed
    curves.png         training loss and val mean IU against iteration
    samples/           image | truth | prediction strips at each evaluation
    last.npz           the latest checkpoint (model, optimiser, RNG state, metadata)
    best.npz           the checkpoint with the best val mean IU so far
    metrics.json       the final evaluation

``--resume DIR/last.npz`` continues a run where it stopped, with the same
optimiser state (momentum, or Adam's moments), batch-norm statistics,
data order and dropout masks, so on the CPU it ends with the same weights
as a run that was never interrupted. Ctrl-C saves last.npz
first. A NaN or infinite loss stops the run, keeping the last good
checkpoint. Checkpoints are written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import cli, rng
from . import functional as F
from .autograd import Tensor
from .backend import to_device
from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .data import Augment, BatchLoader, median_frequency_weights, read_class_weights
from .evaluate import evaluate, scores_json
from .metrics import segmentation_scores
from .models import BACKBONES, FCN, MODELS, MultiHeadFCN, StreamFCN, add_input_channels, build_fcn
from .models.backbones import ONLY_FCN32S
from .optim import SGD, Adam
from .preprocessing import BY_NAME, CAFFE, TORCHVISION, with_depth

# The paper's learning rates for its unnormalised (summed) loss, by stage (Sec. 4.1-4.2).
PAPER_LR = {"fcn32s": 1e-10, "fcn16s": 1e-12, "fcn8s": 1e-14, "fcn8s-atonce": 1e-10}

PRESETS: dict[str, dict[str, Any]] = {
    # A newcomer's first run: FCN-8s learns Shapes from scratch in minutes on a CPU. From scratch the paper's
    # plain trunk and SGD learn too slowly for that (benchmarks/RESULTS.md), so: batch norm (tiny-bn) and Adam.
    "quick": dict(model="fcn8s", backbone="tiny-bn", dataset="shapes", image_size=128, iters=1000, batch_size=4,
                  crop_size=None, augment="flip", optimizer="adam", lr=0.01, lr_policy="poly", warmup=50,
                  momentum=0.9, weight_decay=0.0, loss_reduction="mean", eval_every=250, checkpoint_every=250,
                  score_init="normal"),
    # Real street scenes (issue 15): FCN-8s from scratch on CamVid's 367 training images at their full 480x360,
    # median-frequency class weights for the rare classes (pole, sign, pedestrian, bicyclist), the quick
    # preset's tiny-bn trunk and Adam schedule. camvid-cpu: the same for 800 iterations (~30 min on 2 CPU
    # cores); whole images beat 224x224 crops at the same time budget (0.50 against 0.46, RESULTS.md).
    "camvid": dict(model="fcn8s", backbone="tiny-bn", dataset="camvid", image_size=None, iters=4000, batch_size=4,
                   crop_size=None, augment="flip", optimizer="adam", lr=0.01, lr_policy="poly", warmup=50,
                   momentum=0.9, weight_decay=0.0, loss_reduction="mean", eval_every=500, checkpoint_every=500,
                   score_init="normal", class_weights="median-freq"),
    "camvid-cpu": dict(model="fcn8s", backbone="tiny-bn", dataset="camvid", image_size=None, iters=800, batch_size=4,
                       crop_size=None, augment="flip", optimizer="adam", lr=0.01, lr_policy="poly", warmup=50,
                       momentum=0.9, weight_decay=0.0, loss_reduction="mean", eval_every=400, checkpoint_every=400,
                       score_init="normal", class_weights="median-freq"),
    # The reference's solver (voc-fcn*/solve.py): SGD, momentum 0.99, summed loss, batch 1, fixed lr by stage.
    "paper": dict(model="fcn32s", backbone="vgg16", dataset="sbd", image_size=None, iters=100000, batch_size=1, crop_size=None,
                  augment="none", optimizer="sgd", lr=None, lr_policy="fixed", warmup=0, momentum=0.99, weight_decay=5e-4,
                  loss_reduction="sum", eval_every=4000, checkpoint_every=4000, score_init="zero"),
}  # fmt: skip

AUGMENTS = ("none", "flip", "flip-scale")
OPTIMIZERS = ("sgd", "adam")
LOG_FIELDS = ["iteration", "loss", "lr", "seconds", "pixel_acc", "mean_acc", "mean_iu", "fw_iu"]


@dataclass
class Config:
    """Every setting of a run (written to config.json and into each checkpoint)."""

    preset: str = "quick"
    model: str = "fcn8s"
    backbone: str = "tiny"
    dataset: str = "shapes"
    data_root: str | None = None
    voc_root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    n_class: int | None = None
    image_size: int | None = None
    device: str = "auto"
    tf32: bool = False
    class_weights: str = "none"
    iters: int = 600
    batch_size: int = 4
    crop_size: int | None = None
    augment: str = "flip"
    optimizer: str = "sgd"
    lr: float | None = None
    lr_policy: str = "fixed"
    warmup: int = 0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    loss_reduction: str = "mean"
    score_init: str = "zero"
    learnable_upsampling: bool = False
    fusion: str | None = None
    heads: str | None = None
    init: str | None = None
    init_depth: str | None = None
    resume: str | None = None
    out: str = "runs/quick"
    eval_every: int = 200
    eval_limit: int | None = None
    checkpoint_every: int = 200
    samples: int = 4
    seed: int = 0
    debug: bool = False


class _Flag:
    """A switch that a signal handler can turn on and the loop can test (``if flag``)."""

    def __init__(self) -> None:
        self.on = False

    def set(self) -> None:
        self.on = True

    def __bool__(self) -> bool:
        return self.on


class Diverged(Exception):
    """The loss became NaN or infinite."""


def parse_config(argv: Sequence[str] | None) -> Config:
    p = cli.ArgumentParser(prog="minifcn.train", description="Train an FCN (on the built-in Shapes by default).")
    a = p.add_argument
    a("--preset", choices=PRESETS, default="quick", help="quick (default): FCN-8s tiny-bn on Shapes in minutes; "
      "camvid: FCN-8s on CamVid street scenes (with --data-root; camvid-cpu: 800 iterations, for a CPU); "
      "paper: the reference's solver settings")
    a("--model", choices=MODELS, help="the network (quick: fcn8s; paper: fcn32s)")
    a("--backbone", choices=BACKBONES, help="the trunk (quick: tiny-bn, tiny with batch norm; paper: vgg16)")
    cli.add_data_arguments(p, dataset_default=None)
    a("--train-split", help="split to train on (default train)")
    a("--val-split", help="split to evaluate on (default val; sbd also seg11valid, with --voc-root)")
    cli.add_device_arguments(p)
    a("--iters", type=int, help="iterations (quick 1000, paper 100000)")
    a("--batch-size", type=int, help="images per iteration (quick 4, paper 1: whole images)")
    a("--crop-size", type=int, help="train on random square crops of this size (padded with 255 labels)")
    a("--augment", choices=AUGMENTS, help="random flips (and scales 0.5-2): quick flip, paper none")
    a("--optimizer", choices=OPTIMIZERS, help="sgd (Caffe's, as the paper) or adam (quick)")
    a("--lr", type=float, help="base learning rate (quick 0.01; paper 1e-10, 1e-12, 1e-14 for 32s, 16s, 8s)")
    a("--lr-policy", choices=("fixed", "poly"), help="fixed, or poly: lr * (1 - t/iters)^0.9 (quick poly)")
    a("--warmup", type=int, help="iterations of linear lr warm-up (quick 50)")
    a("--momentum", type=float, help="SGD momentum (quick 0.9, paper 0.99)")
    a("--weight-decay", type=float, help="L2 weight decay (quick 0, paper 5e-4); biases and batch norm have none")
    a("--class-weights", help="none (default), median-freq (median frequency balancing from the training labels), "
      "or a file of one weight per class (.npy, or numbers in text)")
    a("--loss-reduction", choices=("mean", "sum"), help="mean over pixels (quick) or their sum (paper)")
    a("--score-init", choices=("zero", "normal"), help="score layers start at zero (paper, for pretrained "
      "trunks) or small random (quick: a random trunk learns nothing through zero scores)")
    a("--learnable-upsampling", action="store_true", default=None, help="let the upsampling layers learn")
    a("--fusion", choices=("early", "late", "rgb", "depth"), help="RGB-D datasets: depth as a 4th input channel "
      "(early, the default), or a second FCN-32s stream whose scores are added (late); rgb or depth trains one "
      "stream alone, to start late fusion from (--init RGB.npz --init-depth DEPTH.npz) (Sec. 5, NYUDv2)")
    a("--heads", metavar="NAME,NAME", help="two-label datasets: the tasks to learn, one head each on one trunk "
      "(default: all, e.g. shape,colour or semantic,geometric; Sec. 5, SIFT Flow)")
    a("--init", metavar="PATH", help="ImageNet weights (.caffemodel, torchvision .pth) or a coarser stage's "
      "checkpoint (32s -> 16s -> 8s)")
    a("--init-depth", metavar="PATH", help="--fusion late: the depth stream's checkpoint (--fusion depth); "
      "--init gives the rgb stream's (--fusion rgb)")
    a("--resume", metavar="PATH", help="continue a run from its last.npz")
    a("--out", help="output folder (default runs/<preset>)")
    a("--eval-every", type=int, help="evaluate every N iterations (and at the end)")
    a("--eval-limit", type=int, help="evaluate on the first N val images only")
    a("--checkpoint-every", type=int, help="write last.npz every N iterations")
    a("--samples", type=int, help="sample strips saved at each evaluation (default 4)")
    a("--seed", type=int, help="seed of the weights, the data order and dropout (default 0)")
    a("--debug", action="store_true", help="show tracebacks")
    args = vars(p.parse_args(argv))

    preset = args.pop("preset")
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in args.items() if v is not None})
    values["preset"] = preset
    if values.get("lr") is None:
        values["lr"] = PAPER_LR[values["model"]]
    values.setdefault("out", None)
    if values["out"] is None:
        values["out"] = os.path.join("runs", preset)
    if values.get("dataset") in cli.RGBD_DATASETS and values.get("fusion") is None:
        values["fusion"] = "early"
    config = Config(**{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(Config)}})
    check_config(config)
    return config


def check_config(c: Config) -> None:
    """Flag values that cannot work, named as the user typed them."""
    positive = {"--iters": c.iters, "--batch-size": c.batch_size, "--eval-every": c.eval_every,
                "--checkpoint-every": c.checkpoint_every}  # fmt: skip
    for flag, v in positive.items():
        if v < 1:
            raise cli.UserError(f"{flag} must be at least 1, got {v}")
    if c.lr <= 0 or not math.isfinite(c.lr):
        raise cli.UserError(f"--lr must be a positive number, got {c.lr}")
    if not 0 <= c.momentum < 1:
        raise cli.UserError(f"--momentum must lie in [0, 1), got {c.momentum}")
    if c.weight_decay < 0:
        raise cli.UserError(f"--weight-decay must be >= 0, got {c.weight_decay}")
    if c.crop_size is not None and c.crop_size < 1:
        raise cli.UserError(f"--crop-size must be at least 1, got {c.crop_size}")
    if c.backbone in ONLY_FCN32S and c.model != "fcn32s":
        raise cli.UserError(f"--backbone {c.backbone} exists for --model fcn32s only (as in the paper), not {c.model}")
    if c.fusion is not None and c.dataset not in cli.RGBD_DATASETS:
        raise cli.UserError(f"--fusion is for RGB-D datasets ({', '.join(cli.RGBD_DATASETS)}), not {c.dataset}")
    if c.fusion == "late" and c.model != "fcn32s":
        raise cli.UserError(f"--fusion late joins two FCN-32s streams (as the paper's NYUDv2 nets), not {c.model}")
    if c.fusion == "late" and bool(c.init) != bool(c.init_depth):
        raise cli.UserError("--fusion late starts both streams from trained ones (--init RGB.npz --init-depth "
                            "DEPTH.npz, from runs with --fusion rgb and --fusion depth) or neither")  # fmt: skip
    if c.init_depth and c.fusion != "late":
        raise cli.UserError("--init-depth is for --fusion late (the depth stream's checkpoint)")
    if c.heads is not None and c.dataset not in cli.MULTITASK_DATASETS:
        raise cli.UserError(f"--heads is for datasets with several labels ({', '.join(cli.MULTITASK_DATASETS)}), "
                            f"not {c.dataset}")  # fmt: skip
    if c.dataset in cli.MULTITASK_DATASETS and (c.init or c.fusion):
        raise cli.UserError("--init and --fusion are not available with several heads yet")
    if c.warmup < 0 or c.samples < 0 or (c.eval_limit is not None and c.eval_limit < 1):
        raise cli.UserError("--warmup and --samples must be >= 0, and --eval-limit >= 1")


def learning_rate(c: Config, t: int) -> float:
    """The lr of iteration t: linear warm-up over c.warmup iterations, then fixed or poly decay."""
    lr = c.lr
    if c.lr_policy == "poly":
        lr *= (1.0 - t / c.iters) ** 0.9
    if t < c.warmup:
        lr *= (t + 1) / c.warmup
    return lr


def randomise_scores(model: FCN, seed: int) -> None:
    """Score layers drawn from N(0, 1/fan_in) instead of zero (``--score-init normal``).

    The paper starts its score layers at zero because its trunk is already
    trained (ImageNet): the first gradients teach the scores to read good
    features. On a random trunk that is a trap: the gradient reaching the
    trunk is proportional to the score weights, so both start out near zero
    and learning crawls. Random scores let the whole net learn from step one.
    """
    generator = np.random.default_rng([seed, 1])
    for dotted, layer in model.named_modules():  # 'score_fr', or 'rgb.score_fr' in a late-fusion net
        if dotted.rsplit(".", 1)[-1].startswith("score"):
            w = layer.weight
            fan_in = int(np.prod(w.shape[1:]))
            w.data = (generator.standard_normal(w.shape) / np.sqrt(fan_in)).astype(w.dtype)


class Run:
    """One training run: its model, optimiser, data, output folder, and the loop."""

    def __init__(self, c: Config):
        self.c = c
        self.device, why = cli.pick_device(c.device, c.tf32)
        fusion = f", {c.fusion} fusion of depth" if c.fusion else ""
        self.say(f"minifcn: training {c.model} ({c.backbone} backbone{fusion}) on {c.dataset}; "
                 f"device {self.device} ({why})")  # fmt: skip
        self.train_set = cli.build_dataset(c.dataset, c.train_split, c.data_root, c.n_class, c.voc_root, c.image_size)
        self.val_set = cli.build_dataset(c.dataset, c.val_split, c.data_root, c.n_class, c.voc_root, c.image_size)
        self.n_class = self.train_set.n_class
        self.classes = list(self.train_set.classes)
        self.heads = self.choose_heads(c.heads)  # name -> (classes, label index); None for one task
        if self.heads:  # the first head leads: its classes in the log, metrics.json's top level and best.npz
            self.classes = next(iter(self.heads.values()))[0]
            self.n_class = len(self.classes)
        self.class_weights = self.choose_class_weights(c.class_weights)  # host float64 (n_class,), or None
        self.start, self.best = 0, -1.0
        # A net trained from scratch sees RGB scaled as torchvision does; ImageNet weights bring their own.
        self.preprocessing = TORCHVISION if c.backbone.startswith("tiny") and not c.init else CAFFE
        resumed = load_checkpoint(c.resume) if c.resume else None
        if resumed is not None:
            self.model = self.resume_model(resumed)
        else:
            rng.manual_seed(c.seed)
            # Early fusion grows conv1, and a single stream is wrapped, after --init, so that ImageNet
            # weights land on an RGB net as usual; late fusion starts from two trained streams instead.
            if self.heads:
                self.model = MultiHeadFCN(c.model, {h: len(names) for h, (names, _) in self.heads.items()},
                                          c.backbone, c.learnable_upsampling)  # fmt: skip
            else:
                self.model = build_fcn(c.model, self.n_class, c.backbone, c.learnable_upsampling,
                                       "late" if c.fusion == "late" else None)  # fmt: skip
            if c.fusion == "late" and c.init:
                self.join_streams(c.init, c.init_depth)
            elif c.init:
                self.initialise(c.init)
            if c.fusion == "early":
                add_input_channels(self.model, 1)
            elif c.fusion in ("rgb", "depth"):
                self.model = StreamFCN(self.model, c.fusion)
            if not c.init and c.score_init == "normal":
                randomise_scores(self.model, c.seed)
        if c.fusion is not None:
            self.preprocessing = with_depth(self.preprocessing)
        self.model.to(self.device)
        if c.optimizer == "adam":
            self.optimizer: SGD | Adam = Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        else:
            self.optimizer = SGD(self.model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        if resumed is not None:
            self.optimizer.load_state_dict(resumed.optim)
            rng.set_state(resumed.meta["rng"])
            self.start, self.best = int(resumed.meta["iteration"]), float(resumed.meta.get("best_mean_iu", -1.0))
        crop = (c.crop_size, c.crop_size) if c.crop_size else None
        scale = (0.5, 2.0) if c.augment == "flip-scale" else (1.0, 1.0)
        augment = Augment(flip=c.augment != "none", scale=scale, crop_size=crop)
        self.loader = BatchLoader(self.train_set, c.batch_size, self.preprocessing, augment, seed=c.seed)
        # On the device once, so that no step uploads or checks them again.
        dtype = next(iter(self.model.parameters())).dtype
        self.loss_weight = None if self.class_weights is None else to_device(self.class_weights.astype(dtype), self.device)

    def choose_class_weights(self, choice: str) -> np.ndarray | None:
        """--class-weights: none, median-freq (from the training labels) or a file of one weight per class."""
        if choice == "none":
            return None
        if self.heads:
            raise cli.UserError(f"--class-weights {choice}: not available with several heads ({', '.join(self.heads)})")
        if choice == "median-freq":
            weights = median_frequency_weights(self.train_set)
        else:
            weights = read_class_weights(choice, self.n_class)
        shown = ", ".join(f"{name} {w:.3g}" for name, w in zip(self.classes, weights))
        self.say(f"minifcn: class weights ({choice}): {shown}")
        return weights

    def choose_heads(self, wanted: str | None) -> dict[str, tuple[list[str], int]] | None:
        """--heads: the tasks to learn, each with its class names and its index in the label's last axis."""
        available = getattr(self.train_set, "head_classes", None)
        if available is None:
            return None
        names = list(available) if wanted is None else [h.strip() for h in wanted.split(",") if h.strip()]
        unknown = [h for h in names if h not in available]
        if unknown or not names or len(set(names)) != len(names):
            raise cli.UserError(f"--heads {wanted!r}: choose distinct names among {', '.join(available)}")
        return {h: (list(available[h]), list(available).index(h)) for h in names}

    @staticmethod
    def say(line: str) -> None:
        print(line, flush=True)

    # -- starting points ---------------------------------------------------------------------

    def resume_model(self, ckpt: Any) -> FCN:
        meta, c = ckpt.meta, self.c
        if "iteration" not in meta or "rng" not in meta:
            raise cli.UserError(f"--resume {c.resume!r}: not a training checkpoint (no iteration or RNG state)")
        for key in ("model", "backbone", "dataset", "optimizer", "fusion", "heads"):
            theirs = meta.get("config", {}).get(key, meta.get(key))
            if theirs != getattr(c, key):
                raise cli.UserError(f"--resume {c.resume!r} was trained with --{key} {theirs}, "
                                    f"this run asks for {getattr(c, key)}")  # fmt: skip
        if int(meta["n_class"]) != self.n_class:
            raise cli.UserError(f"--resume {c.resume!r} has {meta['n_class']} classes, the dataset {self.n_class}")
        self.preprocessing = BY_NAME[meta.get("preprocessing", "caffe")]
        self.say(f"minifcn: resuming from {c.resume} at iteration {meta['iteration']}")
        return model_from_checkpoint(ckpt)

    def initialise(self, path: str) -> None:
        """--init: ImageNet weights into the trunk, or a coarser FCN's checkpoint (staged training)."""
        from .surgery import set_n_class, stage, transplant

        if path.endswith(".npz"):
            earlier_ckpt = load_checkpoint(path)
            earlier = model_from_checkpoint(earlier_ckpt)
            if earlier.n_class != self.n_class:
                set_n_class(earlier, self.n_class)
            if type(earlier) is type(self.model):
                report = transplant(earlier.state_dict(), self.model)
            else:
                report = stage(earlier, self.model)
            self.preprocessing = BY_NAME[earlier_ckpt.meta.get("preprocessing", "caffe")]
        else:
            from .weights import read

            state = read(path)
            report = transplant(state, self.model)
            self.preprocessing = state.preprocessing
        if not report.copied:
            raise cli.UserError(f"--init {path!r}: no array matched a parameter of {self.c.model} "
                                f"({self.c.backbone}); {report}")  # fmt: skip
        self.say(f"minifcn: --init {path}: {report}")

    def join_streams(self, rgb_path: str, depth_path: str) -> None:
        """--fusion late --init RGB.npz --init-depth DEPTH.npz: both streams from runs of one stream each."""
        from .surgery import transplant

        for path, stream in ((rgb_path, "rgb"), (depth_path, "depth")):
            ckpt = load_checkpoint(path)
            if ckpt.meta.get("fusion") != stream:
                raise cli.UserError(f"{path!r} was not trained with --fusion {stream} (its fusion: "
                                    f"{ckpt.meta.get('fusion')}); late fusion needs one run of each stream")  # fmt: skip
            if int(ckpt.meta["n_class"]) != self.n_class or ckpt.meta["backbone"] != self.c.backbone:
                raise cli.UserError(f"{path!r} has {ckpt.meta['n_class']} classes on {ckpt.meta['backbone']}; this run "
                                    f"needs {self.n_class} on {self.c.backbone}")  # fmt: skip
            state = {k: v for k, v in ckpt.model.items() if k.startswith(stream + ".")}
            report = transplant(state, self.model)  # by name: rgb.conv1_1.weight ... (depth.upscore is not used)
            self.say(f"minifcn: the {stream} stream from {path}: copied {len(report.copied)} arrays")
            self.preprocessing = BY_NAME[ckpt.meta.get("preprocessing", "caffe")]

    # -- output ------------------------------------------------------------------------------

    def meta(self, iteration: int) -> dict[str, Any]:
        c = self.c
        return {"model": c.model, "backbone": c.backbone, "n_class": self.n_class, "classes": self.classes,
                "dataset": c.dataset, "image_size": c.image_size, "preprocessing": self.preprocessing.name,
                "palette": getattr(self.train_set, "palette", "voc"),
                "learnable_upsampling": c.learnable_upsampling, "fusion": c.fusion, "iteration": iteration,
                "heads": None if not self.heads else {h: len(names) for h, (names, _) in self.heads.items()},
                "head_classes": None if not self.heads else {h: names for h, (names, _) in self.heads.items()},
                "best_mean_iu": self.best, "rng": rng.get_state(), "config": dataclasses.asdict(c),
                "class_weights": None if self.class_weights is None else self.class_weights.tolist()}  # fmt: skip

    def checkpoint(self, name: str, iteration: int) -> None:
        for pname, p in self.model.named_parameters():
            if not bool(np.isfinite(to_device(p.data, "cpu")).all()):
                raise cli.UserError(f"parameter {pname} is no longer finite after iteration {iteration}; "
                                    f"{name} was not overwritten. Try a lower --lr, or --loss-reduction mean")  # fmt: skip
        save_checkpoint(os.path.join(self.c.out, name), self.model, self.optimizer, self.meta(iteration))

    def open_log(self) -> None:
        """log.csv: kept up to the resumed iteration (rows a crash left after the checkpoint are dropped)."""
        path = os.path.join(self.c.out, "log.csv")
        rows: list[dict[str, str]] = []
        if self.start > 0 and os.path.exists(path):
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= self.start]
        self.log_rows = rows
        self.log_file = open(path, "w", newline="", encoding="utf-8")
        self.log = csv.DictWriter(self.log_file, LOG_FIELDS)
        self.log.writeheader()
        self.log.writerows(rows)
        self.log_file.flush()

    def write_row(self, row: dict[str, Any]) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.log.writerow(row)
        self.log_file.flush()
        self.log_rows.append({k: str(v) for k, v in row.items()})

    def draw_curves(self) -> None:
        from .plots import curves

        rows = self.log_rows
        loss_rows = [r for r in rows if r.get("loss") not in (None, "")]
        eval_rows = [r for r in rows if r.get("mean_iu") not in (None, "")]
        curves([int(r["iteration"]) for r in loss_rows], [float(r["loss"]) for r in loss_rows],
               [int(r["iteration"]) for r in eval_rows], [float(r["mean_iu"]) for r in eval_rows],
               ).save(os.path.join(self.c.out, "curves.png"))  # fmt: skip

    def evaluate(self, iteration: int) -> dict[str, Any]:
        from .plots import sample_strip

        folder = os.path.join(self.c.out, "samples")
        os.makedirs(folder, exist_ok=True)

        def save_sample(i: int, image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> None:
            if i < self.c.samples:
                strip = sample_strip(image, label, prediction, getattr(self.val_set, "palette", "voc"))
                strip.save(os.path.join(folder, f"iter{iteration:06d}_{i}.png"))

        args = (self.model, self.val_set, self.preprocessing, self.device, max(self.c.batch_size, 8), self.c.eval_limit)
        if not self.heads:
            return segmentation_scores(evaluate(*args, save_sample))
        # Several heads: each scored on its own task; the first head's scores lead (log.csv, best.npz).
        per_head = {h: segmentation_scores(evaluate(*args, save_sample if k == 0 else None, h))
                    for k, h in enumerate(self.heads)}  # fmt: skip
        return dict(per_head[next(iter(self.heads))], heads=per_head)

    # -- the loop ----------------------------------------------------------------------------

    def catch_ctrl_c(self) -> "_Flag":
        """Ctrl-C finishes the current iteration, saves last.npz and stops; a second Ctrl-C stops at once."""
        import signal

        flag = _Flag()

        def handler(signum: int, frame: Any) -> None:
            if flag:
                raise KeyboardInterrupt
            flag.set()

        try:
            self._previous_handler = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: Ctrl-C keeps its default meaning
            self._previous_handler = None
        return flag

    def release_ctrl_c(self) -> None:
        import signal

        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)

    def step(self, t: int) -> float:
        """One iteration (forward, backward, update) on batch t; returns the loss."""
        x, labels = self.loader.batch(t)
        self.optimizer.lr = learning_rate(self.c, t)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported below, once
            scores = self.model(Tensor(to_device(x, self.device)))
            labels = to_device(labels, self.device)
            if self.heads:  # one loss per task, summed (Sec. 5: "two prediction heads")
                losses = [F.softmax_cross_entropy(scores[h], labels[..., k], reduction=self.c.loss_reduction)
                          for h, (_, k) in self.heads.items()]  # fmt: skip
                loss = losses[0]
                for extra in losses[1:]:
                    loss = loss + extra
            else:
                loss = F.softmax_cross_entropy(scores, labels, reduction=self.c.loss_reduction, weight=self.loss_weight)
            self.optimizer.zero_grad()
            loss.backward()
            # Read back after the backward pass is queued, so that on a GPU the host never waits between the two;
            # still before the update, so a NaN never reaches the weights.
            value = float(loss.item())
            if not math.isfinite(value):
                raise Diverged(value)
            self.optimizer.step()
        return value

    def run(self) -> dict[str, Any]:
        from tqdm import tqdm

        c = self.c
        os.makedirs(c.out, exist_ok=True)
        with open(os.path.join(c.out, "config.json"), "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(c), f, indent=2)
        self.open_log()
        if self.start >= c.iters:
            raise cli.UserError(f"--resume {c.resume!r} is at iteration {self.start}, already >= --iters {c.iters}")
        self.say(f"minifcn: {len(self.train_set)} training and {len(self.val_set)} val images, {self.n_class} "
                 f"classes; iterations {self.start + 1}..{c.iters}, batch {c.batch_size}; writing to {c.out}")  # fmt: skip
        t0 = time.perf_counter() - (float(self.log_rows[-1]["seconds"]) if self.log_rows else 0.0)
        bar = tqdm(total=c.iters, initial=self.start, desc="train", unit="it", dynamic_ncols=True, mininterval=1.0,
                   file=sys.stderr)  # fmt: skip
        scores: dict[str, Any] | None = None
        interrupted = self.catch_ctrl_c()
        try:
            for t in range(self.start, c.iters):
                try:
                    loss = self.step(t)
                except Diverged as e:
                    raise cli.UserError(
                        f"the loss became {e.args[0]} at iteration {t + 1} (lr {self.optimizer.lr:g}); nothing of "
                        f"that iteration was saved: {os.path.join(c.out, 'last.npz')} holds the last good "
                        f"checkpoint. Try a lower --lr, or --loss-reduction mean") from None  # fmt: skip
                done = t + 1
                row: dict[str, Any] = {"iteration": done, "loss": loss, "lr": self.optimizer.lr,
                                       "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
                if done % c.eval_every == 0 or done == c.iters:
                    scores = self.evaluate(done)
                    row.update({k: float(scores[k]) for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")})
                    if scores["mean_iu"] > self.best:
                        self.best = float(scores["mean_iu"])
                        self.checkpoint("best.npz", done)
                    per_head = "".join(f"  {h} {s['mean_iu']:.4f}" for h, s in scores.get("heads", {}).items())
                    bar.write(f"iteration {done}: loss {loss:.4f}  pixel acc {scores['pixel_acc']:.4f}  "
                              f"mean IU {scores['mean_iu']:.4f}  (best {self.best:.4f}){per_head}")  # fmt: skip
                self.write_row(row)
                if done % c.checkpoint_every == 0 or done == c.iters or interrupted:
                    self.checkpoint("last.npz", done)
                if scores is not None and done % c.eval_every == 0:
                    self.draw_curves()
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.update(1)
                if interrupted:
                    bar.close()
                    last = os.path.join(c.out, "last.npz")
                    self.say(f"minifcn: interrupted; saved {last} at iteration {done}; continue with --resume {last}")
                    raise KeyboardInterrupt
        finally:
            self.release_ctrl_c()
            bar.close()
            self.log_file.close()
        self.draw_curves()
        final = scores_json(scores, self.classes, iteration=c.iters)
        if self.heads:
            final["heads"] = {h: scores_json(scores["heads"][h], names) for h, (names, _) in self.heads.items()}
        with open(os.path.join(c.out, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(final, f, indent=2)
        self.say(f"minifcn: done in {time.perf_counter() - t0:.0f} s: mean IU {final['mean_iu']:.4f}, pixel acc "
                 f"{final['pixel_acc']:.4f}; best.npz, last.npz, metrics.json, curves.png in {c.out}")  # fmt: skip
        return final


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    try:
        Run(config).run()
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
