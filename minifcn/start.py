"""Where a training run starts: its model and that model's preprocessing, decided together, once.

Five starting points (Sec. 4.1-4.2, 5):

    scratch        random weights (``--score-init normal`` draws the score layers too)
    --init W       ImageNet weights (.caffemodel, torchvision .pth) copied into the trunk
    --init C.npz   a coarser FCN's checkpoint: FCN-32s -> 16s -> 8s, new skips at zero (staged)
    --fusion late  two trained single-stream runs joined (--init RGB.npz --init-depth DEPTH.npz)
    --resume C     a run's own last.npz: weights, and the optimiser state and RNG for the loop

The preprocessing comes with the weights: a file of ImageNet weights names
its own (Caffe's for the paper's VGG16), a checkpoint records the one it was
trained with, and a trunk of its own widths (``FROM_SCRATCH``) sees torchvision's.
Early fusion grows conv1 and a single stream is wrapped *after* ``--init``,
so that ImageNet weights land on an RGB net as usual. Mistakes raise
ValueError with the flag and the file named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import rng
from .checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, preprocessing_of
from .config import Config
from .heads import Heads
from .models import FC6_KERNEL, FROM_SCRATCH, MultiHeadFCN, StreamFCN, add_input_channels, build_fcn
from .nn import Module
from .optim import SGD, Adam
from .preprocessing import CAFFE, TORCHVISION, Preprocessing, with_depth
from .surgery import randomise_scores, set_n_class, stage, transplant
from .weights import read


@dataclass
class Start:
    """A run's starting point: the model, its preprocessing, and the checkpoint it resumes (or None)."""

    model: Module
    preprocessing: Preprocessing
    resumed: Checkpoint | None = None


def starting_point(c: Config, heads: Heads, say: Callable[[str], None] = print) -> Start:
    """The model and preprocessing of run ``c`` that predicts ``heads``; ``say`` reports what was loaded."""
    if c.resume:
        start = _resume(c, heads, say)
        start.preprocessing = with_depth(start.preprocessing) if c.fusion else start.preprocessing
        return start
    rng.manual_seed(c.seed)
    model = _build(c, heads)
    preprocessing = TORCHVISION if c.backbone in FROM_SCRATCH and not c.init else CAFFE
    if c.fusion == "late" and c.init:
        preprocessing = _join_streams(model, c, heads, say)
    elif c.init:
        preprocessing = _initialise(model, c, heads, say)
    if c.fusion == "early":
        add_input_channels(model, 1)
    elif c.fusion in ("rgb", "depth"):
        model = StreamFCN(model, c.fusion)
    if not c.init and c.score_init == "normal":
        randomise_scores(model, c.seed)
    return Start(model, with_depth(preprocessing) if c.fusion else preprocessing)


def _build(c: Config, heads: Heads) -> Module:
    if heads.several:
        return MultiHeadFCN(
            c.model, heads.sizes(), c.backbone, c.learnable_upsampling, pad=c.pad, fc6_kernel=c.fc6_kernel
        )
    late = "late" if c.fusion == "late" else None
    return build_fcn(c.model, heads.first.n_class, c.backbone, c.learnable_upsampling, late, c.pad, c.fc6_kernel)


def _resume(c: Config, heads: Heads, say: Callable[[str], None]) -> Start:
    ckpt = load_checkpoint(c.resume)
    meta = ckpt.meta
    if "iteration" not in meta or "rng" not in meta:
        raise ValueError(f"--resume {c.resume!r}: not a training checkpoint (no iteration or RNG state)")
    # what checkpoints older than these settings were trained with
    written_before = {"pad": 100, "learnable_upsampling": False, "fc6_kernel": FC6_KERNEL.get(meta.get("backbone"))}
    net = ("model", "backbone", "dataset", "optimizer", "fusion", "heads", "pad", "fc6_kernel", "learnable_upsampling")
    for key in net:
        theirs = meta.get("config", {}).get(key, meta.get(key, written_before.get(key)))
        if theirs != getattr(c, key):
            flag = "--" + key.replace("_", "-")
            raise ValueError(
                f"--resume {c.resume!r} was trained with {flag} {theirs}, this run asks for {getattr(c, key)}"
            )
    if int(meta["n_class"]) != heads.first.n_class:
        raise ValueError(f"--resume {c.resume!r} has {meta['n_class']} classes, the dataset {heads.first.n_class}")
    say(f"minifcn: resuming from {c.resume} at iteration {meta['iteration']}")
    return Start(model_from_checkpoint(ckpt), preprocessing_of(ckpt), ckpt)


def _initialise(model: Module, c: Config, heads: Heads, say: Callable[[str], None]) -> Preprocessing:
    """--init: ImageNet weights into the trunk, or a coarser FCN's checkpoint (staged training)."""
    if c.init.endswith(".npz"):
        earlier_ckpt = load_checkpoint(c.init)
        earlier = model_from_checkpoint(earlier_ckpt)
        if earlier.n_class != heads.first.n_class:
            set_n_class(earlier, heads.first.n_class)
        if type(earlier) is type(model):
            report = transplant(earlier.state_dict(), model)
        else:
            report = stage(earlier, model)
        preprocessing = preprocessing_of(earlier_ckpt)
    else:
        state = read(c.init)
        report = transplant(state, model)
        preprocessing = state.preprocessing
    if not report.copied:
        raise ValueError(f"--init {c.init!r}: no array matched a parameter of {c.model} ({c.backbone}); {report}")
    say(f"minifcn: --init {c.init}: {report}")
    return preprocessing


def _join_streams(model: Module, c: Config, heads: Heads, say: Callable[[str], None]) -> Preprocessing:
    """--fusion late --init RGB.npz --init-depth DEPTH.npz: both streams from runs of one stream each."""
    for path, stream in ((c.init, "rgb"), (c.init_depth, "depth")):
        ckpt = load_checkpoint(path)
        if ckpt.meta.get("fusion") != stream:
            raise ValueError(
                f"{path!r} was not trained with --fusion {stream} (its fusion: {ckpt.meta.get('fusion')}); "
                "late fusion needs one run of each stream"
            )
        if int(ckpt.meta["n_class"]) != heads.first.n_class or ckpt.meta["backbone"] != c.backbone:
            raise ValueError(
                f"{path!r} has {ckpt.meta['n_class']} classes on {ckpt.meta['backbone']}; this run needs "
                f"{heads.first.n_class} on {c.backbone}"
            )
        state = {k: v for k, v in ckpt.model.items() if k.startswith(stream + ".")}
        report = transplant(state, model)  # by name: rgb.conv1_1.weight ... (depth.upscore is not used)
        say(f"minifcn: the {stream} stream from {path}: copied {len(report.copied)} arrays")
    return preprocessing_of(ckpt)


def optimizer_for(c: Config, model: Any, resumed: Checkpoint | None) -> tuple[SGD | Adam, int, float]:
    """The optimiser of ``c``, and the iteration and best mean IU to go on from (a resumed run takes back
    the optimiser's state and the RNG's)."""
    if c.optimizer == "adam":
        optimizer: SGD | Adam = Adam(model.parameters(), lr=c.lr, betas=(0.9, c.beta2), weight_decay=c.weight_decay)
    else:
        optimizer = SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    if resumed is None:
        return optimizer, 0, -1.0
    first = int(resumed.meta["iteration"])
    if first >= c.iters:
        raise ValueError(f"--resume {c.resume!r} is at iteration {first}, already >= --iters {c.iters}")
    optimizer.load_state_dict(resumed.optim)
    if isinstance(optimizer, Adam) and optimizer.betas[1] != c.beta2:  # the state would silently win over the flag
        raise ValueError(
            f"--resume {c.resume!r} was trained with --beta2 {optimizer.betas[1]}, this run asks for {c.beta2}"
        )
    rng.set_state(resumed.meta["rng"])
    return optimizer, first, float(resumed.meta.get("best_mean_iu", -1.0))
