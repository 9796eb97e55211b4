"""The settings of a training run: every flag of ``python -m minifcn.train``, in one dataclass.

``train.py`` fills it from a preset and the command line and checks it; the
starting point (``minifcn.start``) and the checkpoints read it; it is written
to ``config.json`` and into every checkpoint's metadata, so a run can be
told from its files alone.
"""

from __future__ import annotations

from dataclasses import dataclass


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
