"""python -m minifcn.train: train an FCN (Sec. 4), on the built-in Shapes by default.

    python -m minifcn.train                         # --preset quick: FCN-8s, tiny-bn backbone, Shapes, from scratch
    python -m minifcn.train --preset paper --model fcn32s --dataset sbd --data-root SBD \\
        --init vgg16.caffemodel --out runs/fcn32s   # the reference's settings

Every flag left out takes the preset's value (``minifcn.config``; ``--help``
lists them). ``prepare`` reads as the run goes: 1. data, 2. the starting
point (``minifcn.start``), 3. the optimiser, 4. the loop (``minifcn.loop``,
which writes log.csv, curves.png, samples/, last.npz and best.npz into
``--out``); ``main`` adds config.json and metrics.json. ``--resume
DIR/last.npz`` continues a stopped run (Ctrl-C saves last.npz first) and,
on the CPU, ends with the weights of a run never interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Sequence

import numpy as np

from . import cli
from .backend import to_device
from .checkpoint import training_meta
from .config import PAPER_LR, PRESETS, Config
from .data import BALANCING, Augment, BatchLoader, read_class_weights
from .heads import Heads
from .inference import evaluate_heads
from .loop import Loop
from .metrics import scores_json
from .models import BACKBONES, FC6_KERNEL, MODELS, check_fcn
from .optim import learning_rate
from .plots import sample_saver
from .start import optimizer_for, starting_point

AUGMENTS = ("none", "flip", "flip-scale")
OPTIMIZERS = ("sgd", "adam")


def build_parser() -> cli.ArgumentParser:
    """The command line's flags (every one overrides its preset's value; unset ones are None)."""
    p = cli.ArgumentParser(prog="minifcn.train", description="Train an FCN (on the built-in Shapes by default).")
    a = p.add_argument
    # The flags as a table, one flag to a line or two (the formatter would give each argument a line of its own).
    # fmt: off
    iters = {name: preset["iters"] for name, preset in PRESETS.items()}
    a("--preset", choices=PRESETS, default="quick", help="quick (default): FCN-8s tiny-bn on Shapes in minutes; "
      f"camvid ({iters['camvid']} iterations, for a GPU; camvid-cpu {iters['camvid-cpu']}): CamVid street scenes, "
      "with --data-root; paper: the reference's solver")
    a("--model", choices=MODELS, help="the network (quick: fcn8s; paper: fcn32s)")
    a("--backbone", choices=BACKBONES, help="the trunk (quick: tiny-bn, tiny with batch norm; camvid: small-bn, "
      "tiny-bn 2-4x as wide; paper: vgg16)")
    cli.add_data_arguments(p, dataset_default=None)
    a("--train-split", help="split to train on (default train; camvid also train-without-DRIVE, e.g. 0006R0)")
    a("--val-split", help="split to evaluate on (default val; sbd also seg11valid, with --voc-root; camvid a DRIVE)")
    cli.add_device_arguments(p)
    a("--iters", type=int, help=f"iterations (quick {iters['quick']}, paper {iters['paper']})")
    a("--batch-size", type=int, help="images per iteration (quick 4, paper 1: whole images)")
    a("--crop-size", type=int, help="train on random square crops of this size (padded with 255 labels)")
    a("--augment", choices=AUGMENTS, help="random flips (and scales 0.5-2): quick flip, paper none")
    a("--optimizer", choices=OPTIMIZERS, help="sgd (Caffe's, as the paper) or adam (quick)")
    a("--lr", type=float, help="base learning rate (quick 0.01; paper 1e-10, 1e-12, 1e-14 for 32s, 16s, 8s)")
    a("--lr-policy", choices=("fixed", "poly"), help="fixed, or poly: lr * (1 - t/iters)^0.9 (quick poly)")
    a("--warmup", type=int, help="iterations of linear lr warm-up (quick 100)")
    a("--momentum", type=float, help="SGD momentum (quick 0.9, paper 0.99)")
    a("--beta2", type=float, help="Adam's decay of its mean squared gradient (quick 0.99; PyTorch's default 0.999)")
    a("--weight-decay", type=float, help="L2 weight decay (quick 0, paper 5e-4); biases and batch norm have none")
    a("--class-weights", help="none (default), median-freq (median frequency balancing of the training labels), "
      "enet (ENet's 1/ln(1.02 + share)), or a file of one weight per class (.npy, or numbers in text)")
    a("--loss-reduction", choices=("mean", "sum"), help="mean over pixels (quick) or their sum (paper)")
    a("--score-init", choices=("zero", "normal"), help="score layers start at zero (paper, for trained trunks) "
      "or small random (quick: a random trunk learns nothing through zero scores)")
    a("--learnable-upsampling", action=argparse.BooleanOptionalAction, help="let the upsampling layers learn (quick)")
    cli.add_geometry_arguments(p)
    a("--fusion", choices=("early", "late", "rgb", "depth"), help="RGB-D data (Sec. 5, NYUDv2): depth as a 4th "
      "input channel (early, the default), or a second FCN-32s stream whose scores are added (late); rgb or depth "
      "trains one stream alone, to start late fusion from (--init RGB.npz --init-depth DEPTH.npz)")
    a("--heads", metavar="NAME,NAME", help="two-label datasets (Sec. 5, SIFT Flow): the tasks to learn, one head "
      "each on one trunk (default: all, e.g. shape,colour or semantic,geometric)")
    a("--init", metavar="PATH", help="ImageNet weights (.caffemodel, torchvision .pth) or a coarser stage's "
      "checkpoint (32s -> 16s -> 8s); --fusion late: the rgb stream's (a --fusion rgb run)")
    a("--init-depth", metavar="PATH", help="--fusion late: the depth stream's checkpoint (a --fusion depth run)")
    a("--resume", metavar="PATH", help="continue a run from its last.npz")
    cli.add_download_argument(p)
    a("--out", help="output folder (default runs/<preset>)")
    a("--eval-every", type=int, help="evaluate every N iterations (and at the end)")
    a("--eval-limit", type=int, help="evaluate on the first N val images only")
    a("--checkpoint-every", type=int, help="write last.npz every N iterations")
    a("--samples", type=int, help="sample strips saved at each evaluation (default 4)")
    a("--seed", type=int, help="seed of the weights, the data order and dropout (default 0)")
    a("--debug", action="store_true", help="show tracebacks")
    # fmt: on
    return p


def parse_config(argv: Sequence[str] | None) -> Config:
    """The run's settings: the preset's, overridden by every flag given."""
    args = vars(build_parser().parse_args(argv))
    preset = args.pop("preset")
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in args.items() if v is not None})
    values["preset"] = preset
    own_net = all(values.get(k) == PRESETS[preset].get(k) for k in ("model", "backbone"))
    for key, paper in (("pad", 100), ("fc6_kernel", None)):  # a preset's geometry is for its own net
        if args[key] is None and not own_net:
            values[key] = paper  # another net starts at the paper's
    fc6 = values.get("fc6_kernel")  # recorded as used: the classifier's own size (7 for VGG16's geometry) if None
    values["fc6_kernel"] = FC6_KERNEL.get(values["backbone"]) if fc6 is None else fc6
    if values.get("lr") is None:
        values["lr"] = PAPER_LR[values["model"]]
    if values.get("out") is None:
        values["out"] = os.path.join("runs", preset)
    if values.get("dataset") in cli.RGBD_DATASETS and values.get("fusion") is None:
        values["fusion"] = "early"
    if values.get("dataset") in cli.GENERATED_DATASETS and values.get("image_size") is None:
        values["image_size"] = cli.GENERATED_SIZE  # recorded as used, in config.json and the checkpoints
    config = Config(**{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(Config)}})
    check_config(config)
    return config


def check_config(c: Config) -> None:
    """Flag values that cannot work, named as the user typed them."""
    positive = {
        "--iters": c.iters,
        "--batch-size": c.batch_size,
        "--eval-every": c.eval_every,
        "--checkpoint-every": c.checkpoint_every,
    }
    for flag, v in positive.items():
        if v < 1:
            raise cli.UserError(f"{flag} must be at least 1, got {v}")
    if c.lr <= 0 or not math.isfinite(c.lr):
        raise cli.UserError(f"--lr must be a positive number, got {c.lr}")
    if not 0 <= c.momentum < 1:
        raise cli.UserError(f"--momentum must lie in [0, 1), got {c.momentum}")
    if not 0 <= c.beta2 < 1:
        raise cli.UserError(f"--beta2 must lie in [0, 1), got {c.beta2}")
    if c.weight_decay < 0:
        raise cli.UserError(f"--weight-decay must be >= 0, got {c.weight_decay}")
    if c.crop_size is not None and c.crop_size < 1:
        raise cli.UserError(f"--crop-size must be at least 1, got {c.crop_size}")
    check_fcn(c.model, c.backbone, c.fusion)  # the net exists (build_fcn's own check)
    cli.check_input_size(c.dataset, c.image_size, c.model, c.backbone, c.pad, c.crop_size, c.fc6_kernel)  # a twin
    if c.fusion is not None and c.dataset not in cli.RGBD_DATASETS:
        raise cli.UserError(f"--fusion is for RGB-D datasets ({', '.join(cli.RGBD_DATASETS)}), not {c.dataset}")
    if c.fusion == "late" and bool(c.init) != bool(c.init_depth):
        raise cli.UserError(
            "--fusion late starts both streams from trained ones (--init RGB.npz --init-depth "
            "DEPTH.npz, from runs with --fusion rgb and --fusion depth) or neither"
        )
    if c.init_depth and c.fusion != "late":
        raise cli.UserError("--init-depth is for --fusion late (the depth stream's checkpoint)")
    if c.heads is not None and c.dataset not in cli.MULTITASK_DATASETS:
        raise cli.UserError(
            f"--heads is for datasets with several labels ({', '.join(cli.MULTITASK_DATASETS)}), not {c.dataset}"
        )
    if c.dataset in cli.MULTITASK_DATASETS and (c.init or c.fusion):
        raise cli.UserError("--init and --fusion are not available with several heads yet")
    if c.warmup < 0 or c.samples < 0 or (c.eval_limit is not None and c.eval_limit < 1):
        raise cli.UserError("--warmup and --samples must be >= 0, and --eval-limit >= 1")


def prepare(c: Config, say: Callable[[str], None] = cli.say) -> tuple[Loop, Heads]:
    """Run ``c`` up to its loop, in four steps; returns the loop and the heads it trains."""
    device, why = cli.pick_device(c.device, c.tf32)
    fusion = f", {c.fusion} fusion of depth" if c.fusion else ""
    say(f"minifcn: training {c.model} ({c.backbone} backbone{fusion}) on {c.dataset}; device {device} ({why})")

    # 1. Data (fetched first with --download): the two splits, the tasks (heads) to learn, the class weights.
    c, train_set, val_set, heads = load_data(c)
    class_weights = choose_class_weights(c, train_set, heads, say)  # host float64 (n_class,), or None

    # 2. The model and its preprocessing: from scratch, from weights, from a coarser net, or resumed.
    start = starting_point(c, heads, say)
    model = start.model.to(device)
    crop = (c.crop_size, c.crop_size) if c.crop_size else None
    augment = Augment(c.augment != "none", (0.5, 2.0) if c.augment == "flip-scale" else (1.0, 1.0), crop)
    loader = BatchLoader(train_set, c.batch_size, start.preprocessing, augment, seed=c.seed)

    # 3. The optimiser; a resumed run takes back its state, the RNG's and its iteration.
    optimizer, first, best = optimizer_for(c, model, start.resumed)

    # 4. The loop: loss, schedule, evaluation, checkpoints.
    dtype = next(iter(model.parameters())).dtype  # the weights go to the device once, not every step
    weight = None if class_weights is None else to_device(class_weights.astype(dtype), device)
    palette = getattr(train_set, "palette", "voc")
    samples = os.path.join(c.out, "samples")

    def evaluate(t: int) -> dict[str, Any]:
        names = list(heads.first.classes)
        saver = sample_saver(samples, f"iter{t:06d}", c.samples, getattr(val_set, "palette", "voc"), names)
        batch = max(c.batch_size, 8)
        return evaluate_heads(model, val_set, heads, start.preprocessing, device, batch, c.eval_limit, saver)

    loop = Loop(
        model,
        optimizer,
        loader.batch,
        loss=lambda out, labels: heads.loss(out, labels, c.loss_reduction, weight),
        lr=lambda t: learning_rate(c.lr, t, c.iters, c.lr_policy, c.warmup),
        iters=c.iters,
        out=c.out,
        evaluate=evaluate,
        meta=lambda t, best: training_meta(c, heads, start.preprocessing, palette, class_weights, t, best),
        device=device,
        eval_every=c.eval_every,
        checkpoint_every=c.checkpoint_every,
        start=first,
        best=best,
        say=say,
    )
    say(
        f"minifcn: {len(train_set)} training and {len(val_set)} val images, {heads.first.n_class} classes; "
        f"iterations {first + 1}..{c.iters}, batch {c.batch_size}; writing to {c.out}"
    )
    return loop, heads


def load_data(c: Config) -> tuple[Config, Any, Any, Heads]:
    """The training and validation splits of ``c.dataset`` and the heads to train (``--heads``, or all); with
    ``--download``, what they and ``--init`` need is fetched first, and ``c`` comes back pointing at it."""
    if c.download:
        fetched = cli.fetch_needed(c.download, c.dataset, (c.train_split, c.val_split), c.data_root, c.voc_root, c.init)
        c = dataclasses.replace(c, data_root=fetched[0], voc_root=fetched[1], init=fetched[2])
    train_set = cli.build_dataset(c.dataset, c.train_split, c.data_root, c.n_class, c.voc_root, c.image_size)
    val_set = cli.build_dataset(c.dataset, c.val_split, c.data_root, c.n_class, c.voc_root, c.image_size)
    try:
        wanted = None if c.heads is None else [h.strip() for h in c.heads.split(",") if h.strip()]
        return c, train_set, val_set, Heads.of_dataset(train_set, wanted)
    except ValueError as e:
        raise cli.UserError(f"--heads {c.heads!r}: {e}") from None


def choose_class_weights(c: Config, train_set: Any, heads: Heads, say: Callable[[str], None]) -> np.ndarray | None:
    """--class-weights: none, median-freq or enet (from the training labels), or a file of one weight per class."""
    if c.class_weights == "none":
        return None
    if heads.several:
        names = ", ".join(h.name for h in heads)
        raise cli.UserError(f"--class-weights {c.class_weights}: not available with several heads ({names})")
    if c.class_weights in BALANCING:
        weights = BALANCING[c.class_weights](train_set)
    else:
        weights = read_class_weights(c.class_weights, heads.first.n_class)
    shown = ", ".join(f"{name} {w:.3g}" for name, w in zip(heads.first.classes, weights))
    say(f"minifcn: class weights ({c.class_weights}): {shown}")
    return weights


def main(argv: Sequence[str] | None = None) -> int:
    c = parse_config(argv)
    try:
        loop, heads = prepare(c)
        os.makedirs(c.out, exist_ok=True)
        with open(os.path.join(c.out, "config.json"), "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(c), f, indent=2)
        scores = loop.run()
    except KeyboardInterrupt:
        return 130
    final = scores_json(scores, heads.first.classes, iteration=c.iters)
    if heads.several:
        final["heads"] = {h.name: scores_json(scores["heads"][h.name], h.classes) for h in heads}
    with open(os.path.join(c.out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(final, f, indent=2)
    print(
        f"minifcn: done in {time.perf_counter() - loop.t0:.0f} s: mean IU {final['mean_iu']:.4f}, pixel acc "
        f"{final['pixel_acc']:.4f}; best.npz, last.npz, metrics.json, curves.png in {c.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
