"""The settings of a training run: every flag of ``python -m minifcn.train`` in one dataclass, and the presets.

``train.py`` fills it from a preset and the command line and checks it; the
starting point (``minifcn.start``) and the checkpoints read it; it is written
to ``config.json`` and into every checkpoint's metadata, so a run can be
told from its files alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    beta2: float = 0.999
    weight_decay: float = 5e-4
    loss_reduction: str = "mean"
    score_init: str = "zero"
    learnable_upsampling: bool = False
    pad: int = 100
    fc6_kernel: int | None = None
    fusion: str | None = None
    heads: str | None = None
    init: str | None = None
    init_depth: str | None = None
    resume: str | None = None
    download: str | None = None
    out: str = "runs/quick"
    eval_every: int = 200
    eval_limit: int | None = None
    checkpoint_every: int = 200
    samples: int = 4
    seed: int = 0
    debug: bool = False


# The paper's learning rates for its unnormalised (summed) loss, by stage (Sec. 4.1-4.2).
PAPER_LR = {"fcn32s": 1e-10, "fcn16s": 1e-12, "fcn8s": 1e-14, "fcn8s-atonce": 1e-10}

# A newcomer's first run: FCN-8s learns Shapes from scratch in a few minutes on a CPU. Each choice is measured
# in benchmarks/RESULTS.md ("The quick preset") and benchmarks/NOTES.md.
QUICK = dict(
    model="fcn8s",
    backbone="tiny-bn",  # the paper's plain trunk learns too slowly from scratch; batch norm makes it quick
    dataset="shapes",
    image_size=128,  # at 96 the stride-8 scores cannot draw the thin bars, and the run ends lower
    pad=21,  # the least padding that aligns FCN-8s's scores with the image, for its 4x4 fc6 (lesson 02)
    fc6_kernel=4,  # pool5 is 4x4 on a 128 image; VGG16's 7x7 needs pad 69, conv1 at 264x264 not 168x168: 1.8x the step
    iters=1100,  # five seeds end within 0.03 of each other; with the 7x7 fc6 and pad 69 they spread 0.052 at 1200
    batch_size=4,
    crop_size=None,
    augment="flip",
    optimizer="adam",  # SGD from random weights needs many times the iterations
    lr=0.01,
    lr_policy="poly",
    warmup=100,  # the random score layers start at a large loss; a slow start keeps Adam's steps small
    momentum=0.9,
    beta2=0.99,  # Adam forgets the first steps' large gradients within ~100 steps, not ~1000
    weight_decay=0.0,
    loss_reduction="mean",
    eval_every=300,
    checkpoint_every=300,
    score_init="normal",  # a random trunk gets no gradient through zero score layers
    learnable_upsampling=True,  # the 2x and 8x upsamplings start bilinear and learn to draw sharper edges
)
# Real street scenes: the quick net's geometry (its 4x4 fc6, pad 21) on CamVid's 367 training images at their full
# 480x360, every setting chosen on a drive held out of training (docs/camvid.md, benchmarks/RESULTS.md). camvid-cpu:
# the quick net itself for 1360 iterations, about 13 minutes on 2 CPU cores.
CAMVID = dict(
    QUICK,
    dataset="camvid",
    backbone="small-bn",  # tiny-bn at 2-4x the width: higher on the held-out drive, and cheap on a GPU
    learnable_upsampling=False,  # neither learnt upsampling nor beta2 0.99 helped on the held-out drive
    beta2=0.999,
    warmup=50,
    image_size=None,
    iters=4000,
    eval_every=1000,
    checkpoint_every=1000,
    class_weights="enet",  # 1/ln(1.02 + share): gentler on the rarest classes, ahead of median frequency there
)
PRESETS: dict[str, dict[str, Any]] = {
    "quick": QUICK,
    "camvid": CAMVID,
    "camvid-cpu": dict(CAMVID, backbone="tiny-bn", iters=1360, eval_every=680, checkpoint_every=680),
    # The reference's solver (voc-fcn*/solve.py): SGD, momentum 0.99, summed loss, batch 1, fixed lr by stage.
    "paper": dict(
        model="fcn32s",
        backbone="vgg16",
        dataset="sbd",
        image_size=None,
        iters=100000,
        batch_size=1,
        crop_size=None,
        augment="none",
        optimizer="sgd",
        lr=None,
        lr_policy="fixed",
        warmup=0,
        momentum=0.99,
        weight_decay=5e-4,
        loss_reduction="sum",
        eval_every=4000,
        checkpoint_every=4000,
        score_init="zero",
    ),
}
